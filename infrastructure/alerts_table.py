"""The alerts read model (R3.6, R7.2): one row per alert, its latest state.

Written by the hook `Strongroom` chains into the transaction that saves an alert's
events, in both projection modes: an alert the log holds is in the table, and one
the log does not hold is not (a rolled-back save leaves neither). The projection's
rebuild and its worker project alerts from the log too, so the table can always be
made again (`strongroom projections rebuild`, restores).

Layout: the columns a listing filters or counts on are in clear and non-personal
(ids, the rule, severity, status, times, the log position); the whole record,
which carries the staff member's client address (the one personal datum an alert
holds, R3.6), is sealed with AES-256-GCM under the system key, bound to the table,
the column and the alert id, like every sealed read-model column
(infrastructure/readmodel.py). Rows only move forward in version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from application.ports import InTransactionHook
from application.ports.alerts import AlertQuery
from infrastructure.crypto.keyring import SYSTEM_SUBJECT, KeyRing
from infrastructure.readmodel import ColumnSealer
from infrastructure.sql import Cursor, Database, adapt_cursor, lock_schema_changes

TABLE = "alerts"
_BLOB = {"sqlite": "BLOB", "postgres": "BYTEA"}
_BIGINT = {"sqlite": "INTEGER", "postgres": "BIGINT"}
_COLUMNS = ("id", "rule_id", "severity", "status", "raised_at", "actor_id", "version", "position", "record")

# Called with the cursor and each newly stored alert's record, in the same
# transaction (the webhook outbox, infrastructure/webhooks.py).
NewAlertHook = Callable[[Cursor, Mapping[str, Any]], None]


class AlertTable:
    """Implements the application's `AlertRecords` port."""

    def __init__(self, database: Database, keyring: KeyRing) -> None:
        self.db = database
        self.sealer = ColumnSealer(keyring)
        self.on_new: list[NewAlertHook] = []

    def create_tables(self) -> None:
        dialect = self.db.dialect
        with self.db.transaction() as cur:
            lock_schema_changes(cur, dialect)
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, rule_id TEXT NOT NULL,"
                " severity TEXT NOT NULL, status TEXT NOT NULL, raised_at TEXT NOT NULL, actor_id TEXT,"
                f" version {_BIGINT[dialect]} NOT NULL, position {_BIGINT[dialect]} NOT NULL,"
                f" record {_BLOB[dialect]} NOT NULL)"
            )
            cur.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_raised ON {TABLE} (raised_at, id)")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_status ON {TABLE} (status, raised_at)")

    # -- writing, inside the caller's transaction -----------------------------------------

    def in_transaction(self, alerts: Sequence[tuple[Mapping[str, Any], int]]) -> InTransactionHook:
        dialect = self.db.dialect
        rows = list(alerts)

        def write(raw_cursor: Any, positions: Sequence[int]) -> None:
            cur = adapt_cursor(dialect, raw_cursor)
            for record, version in rows:
                self.upsert(cur, record, version, max(positions))

        return write

    def upsert(self, cur: Cursor, record: Mapping[str, Any], version: int, position: int,
               *, announce: bool = True) -> None:
        """Store `record` at `version` unless a newer version is there; a first row
        is announced to `on_new` (unless `announce` is False: a rebuild)."""
        alert_id = str(record["id"])
        cur.execute(f"SELECT version FROM {TABLE} WHERE id = ?", (alert_id,))  # nosec B608
        row = cur.fetchone()
        # The recorder's own PostgreSQL cursor answers rows as dicts, ours as tuples.
        stored = None if row is None else (row["version"] if isinstance(row, dict) else row[0])
        if stored is not None and int(stored) >= version:
            return
        sealed = self.sealer.seal(TABLE, "record", SYSTEM_SUBJECT, alert_id, dict(record), field="client_addr")
        values = (alert_id, record["rule_id"], record["severity"], record["status"], record["raised_at"],
                  record.get("actor_id"), version, position, sealed)
        cur.execute(
            f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"  # nosec B608
            f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS[1:])}",
            values,
        )
        if row is None and announce:
            for hook in self.on_new:
                hook(cur, record)

    @staticmethod
    def clear(cur: Cursor) -> None:
        cur.execute(f"DELETE FROM {TABLE}")  # nosec B608

    # -- reading ------------------------------------------------------------------------------

    def _open(self, alert_id: str, sealed: Any) -> dict[str, Any]:
        record: dict[str, Any] = self.sealer.open(TABLE, "record", SYSTEM_SUBJECT, alert_id, sealed,
                                                  field="client_addr")
        return record

    def query(self, query: AlertQuery, limit: int) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("status", query.status), ("severity", query.severity),
                              ("rule_id", query.rule_id), ("actor_id", query.actor_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            clauses.append("raised_at >= ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("raised_at <= ?")
            params.append(query.until)
        if query.before is not None:
            clauses.append("(raised_at < ? OR (raised_at = ? AND id < ?))")
            params.extend([query.before[0], query.before[0], query.before[1]])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT id, record FROM {TABLE} {where} ORDER BY raised_at DESC, id DESC LIMIT ?",  # nosec B608
                        (*params, limit))
            rows = cur.fetchall()
        return [self._open(str(alert_id), sealed) for alert_id, sealed in rows]

    def get(self, alert_id: str) -> dict[str, Any] | None:
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT record FROM {TABLE} WHERE id = ?", (alert_id,))  # nosec B608
            row = cur.fetchone()
        return None if row is None else self._open(alert_id, row[0])

    def counts(self) -> list[tuple[str, str, str, int]]:
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT rule_id, severity, status, COUNT(*) FROM {TABLE}"  # nosec B608
                        " GROUP BY rule_id, severity, status ORDER BY rule_id, severity, status")
            return [(str(r), str(s), str(t), int(n)) for r, s, t, n in cur.fetchall()]
