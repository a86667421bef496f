"""Read models (R1.3): the customer directory, its blind indexes, and interactions.

Rows are projected from customer state. Non-personal columns (portfolio, status,
risk rating, ...) are stored in clear so they can be filtered on; personal columns
are sealed with AES-256-GCM under the customer's own key, bound to table, column
and customer id, so a read-model row cannot be read once the customer's key is
destroyed, and a ciphertext cannot be moved to another customer's row.

Every write goes with a position in the projection tracking table, in the same
transaction, and rows only move forward in version: replaying a notification twice
changes nothing (exactly-once effect).
"""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag

from application.errors import SubjectErased
from domain import values
from domain.catalogue import key_for
from infrastructure.crypto.blind_index import BlindIndex
from infrastructure.crypto.keyring import KeyRing
from infrastructure.crypto.keystore import WrappedKey
from infrastructure.sql import Cursor, Database, lock_schema_changes

PROJECTION = "customer_directory"

CLEAR_COLUMNS = (
    "type", "portfolio", "status", "kyc_status", "risk_rating", "segment", "restricted",
    "version", "created_on", "modified_on",
)
SEALED_COLUMNS = (
    "full_name", "date_of_birth", "national_id", "email", "phone", "address", "cards",
    "bank_accounts",
)
SEARCH_NORMALISERS = {
    # Mailbox names are case-sensitive in theory and never in practice: a search
    # for Ada@... must find ada@..., so the index folds the whole address.
    "email": lambda value: values.normalise_email(value).lower(),
    "phone": values.normalise_phone,
    "national_id": values.normalise_national_id,
    "pan": values.normalise_pan,
}

# The B608 suppressions below: bandit cannot tell an identifier from a value. Every table
# and column name spliced into SQL here is a module constant; every value is a
# bound parameter.
_BLOB = {"sqlite": "BLOB", "postgres": "BYTEA"}
_BIGINT = {"sqlite": "INTEGER", "postgres": "BIGINT"}


def _aad(table: str, column: str, row_id: str) -> bytes:
    return f"strongroom/column/v1|{table}|{column}|{row_id}".encode()


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


@dataclass(frozen=True)
class CustomerRow:
    """A customer's record (no PAN) and, apart, its PANs by card id for the index."""

    record: dict[str, Any]
    pans: dict[str, str]


@dataclass(frozen=True)
class InteractionRow:
    interaction_id: str
    customer_id: str
    kind: str
    channel: str
    occurred_at: str
    notes: str


def create_tables(cur: Cursor, dialect: str) -> None:
    lock_schema_changes(cur, dialect)
    blob, bigint = _BLOB[dialect], _BIGINT[dialect]
    clear = ", ".join(
        f"{c} {bigint}" if c == "version" else f"{c} TEXT" for c in CLEAR_COLUMNS if c != "restricted"
    )
    sealed = ", ".join(f"{c} {blob}" for c in SEALED_COLUMNS)
    cur.execute(
        "CREATE TABLE IF NOT EXISTS rm_customers (customer_id TEXT PRIMARY KEY,"
        f" {clear}, restricted INTEGER NOT NULL DEFAULT 0, {sealed}, position {bigint} NOT NULL)"
    )
    cur.execute("CREATE INDEX IF NOT EXISTS rm_customers_portfolio ON rm_customers (portfolio, customer_id)")
    cur.execute("CREATE INDEX IF NOT EXISTS rm_customers_status ON rm_customers (status, customer_id)")
    cur.execute(
        "CREATE TABLE IF NOT EXISTS rm_customer_search (field TEXT NOT NULL,"
        f" digest {bigint} NOT NULL, customer_id TEXT NOT NULL,"
        " PRIMARY KEY (field, digest, customer_id))"
    )
    cur.execute("CREATE INDEX IF NOT EXISTS rm_customer_search_by_customer ON rm_customer_search (customer_id)")
    cur.execute(
        "CREATE TABLE IF NOT EXISTS rm_interactions (interaction_id TEXT PRIMARY KEY,"
        " customer_id TEXT NOT NULL, kind TEXT NOT NULL, channel TEXT, occurred_at TEXT NOT NULL,"
        f" notes {blob}, position {bigint} NOT NULL)"
    )
    cur.execute(
        "CREATE INDEX IF NOT EXISTS rm_interactions_customer ON rm_interactions (customer_id, occurred_at)"
    )
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS rm_tracking (name TEXT PRIMARY KEY, position {bigint} NOT NULL)"
    )


class ColumnSealer:
    """Seals and opens personal read-model values under the customer's keys."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def seal(
        self, table: str, column: str, subject_id: str, row_id: str, value: Any, *, field: str | None = None
    ) -> bytes | None:
        if value is None:
            return None
        return self._sealed(os.urandom(12), table, column, subject_id, row_id, value, field or column)

    def seal_row(self, table: str, subject_id: str, row_id: str,
                 columns: Sequence[tuple[str, Any]]) -> list[bytes | None]:
        """`seal` for the columns of one row, their nonces drawn from the OS in one
        call: one system call, and on a busy server one hand-over of the interpreter
        lock, rather than one per column (issue 15). Each nonce is 12 bytes of its
        own from the OS's random source, as before."""
        randomness = os.urandom(12 * sum(1 for _, value in columns if value is not None))
        sealed: list[bytes | None] = []
        at = 0
        for column, value in columns:
            if value is None:
                sealed.append(None)
                continue
            sealed.append(self._sealed(randomness[at:at + 12], table, column, subject_id, row_id, value, column))
            at += 12
        return sealed

    def _sealed(self, nonce: bytes, table: str, column: str, subject_id: str, row_id: str, value: Any,
                field: str) -> bytes:
        aead = self.keyring.aead(subject_id, key_for(field), create=True)
        return nonce + aead.encrypt(nonce, json.dumps(value).encode(), _aad(table, column, row_id))

    def open(self, table: str, column: str, subject_id: str, row_id: str, sealed: bytes | None, *, field: str | None = None) -> Any:
        if sealed is None:
            return None
        sealed = bytes(sealed)
        aead = self.keyring.aead(subject_id, key_for(field or column))
        try:
            plaintext = aead.decrypt(sealed[:12], sealed[12:], _aad(table, column, row_id))
        except InvalidTag:
            raise ValueError(f"read-model value {table}.{column} failed authentication") from None
        return json.loads(plaintext)


class CustomerDirectory:
    """Writes and reads the customer read model; the writer side runs in any cursor."""

    def __init__(self, database: Database, keyring: KeyRing, blind_index: BlindIndex, *,
                 keys_schema: str | None = None) -> None:
        self.db = database
        self.sealer = ColumnSealer(keyring)
        self.blind_index = blind_index
        # Issue 15: the key store's schema when it lives in this same PostgreSQL database
        # (the default deployment); a lookup then reads its candidates' wrapped keys in
        # the candidates' own query. Keys stay wrapped until the key ring unwraps them.
        if keys_schema is not None and not re.fullmatch(r"[a-z_][a-z0-9_]*", keys_schema):
            raise ValueError("the keys schema must be a plain lower-case identifier")
        self.keys_schema = keys_schema if database.dialect == "postgres" else None

    # -- writing (inside whatever transaction the caller holds) -------------------------

    def search_digests(self, record: dict[str, Any], pans: dict[str, str]) -> list[tuple[str, int]]:
        digests = []
        for field in ("email", "phone", "national_id"):
            value = record.get(field)
            if value:
                digests.append((field, self.blind_index.digest(field, SEARCH_NORMALISERS[field](value))))
        for pan in pans.values():
            digests.append(("pan", self.blind_index.digest("pan", values.normalise_pan(pan))))
        return sorted(set(digests))

    def keys_for_page(self, subject_ids: Iterable[str]) -> AbstractContextManager[None]:
        """For projecting a page of the log (issue 15): the page's customers' keys
        unwrapped with one query, and the erasure ledger looked at once for the page
        rather than before every sealed column (KeyRing.steady). A directory whose
        sealer has no key ring (the unprotected benchmark's) has nothing to fetch."""
        keyring: KeyRing | None = getattr(self.sealer, "keyring", None)
        if keyring is not None:
            keyring.prefetch_subjects(subject_ids)
        return self._steady()

    def _steady(self) -> AbstractContextManager[None]:
        """One look at the erasure ledger for a batch of opens (KeyRing.steady); nothing
        to look at for a sealer without a key ring (the unprotected benchmark's)."""
        keyring: KeyRing | None = getattr(self.sealer, "keyring", None)
        return nullcontext() if keyring is None else keyring.steady()

    _COLUMNS = ("customer_id", *CLEAR_COLUMNS, *SEALED_COLUMNS, "position")
    _UPSERT = (
        f"INSERT INTO rm_customers ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"  # nosec B608
        f" ON CONFLICT (customer_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS[1:])}"
    )

    def _row_values(self, row_in: CustomerRow, position: int) -> tuple[Any, ...]:
        record, pans = row_in.record, row_in.pans
        cid = str(record["id"])
        clear = [
            int(bool(record.get(c))) if c == "restricted" else (
                _iso(record.get(c)) if c in ("created_on", "modified_on") else record.get(c)
            )
            for c in CLEAR_COLUMNS
        ]
        sealed = self.sealer.seal_row(
            "rm_customers", cid, cid, [(c, self._public_value(c, record.get(c), pans)) for c in SEALED_COLUMNS])
        return (cid, *clear, *sealed, position)

    def sealed_rows(self, rows: Sequence[CustomerRow], position: int) -> dict[str, tuple[Any, ...]]:
        """The rows' column values, sealed, ready for `upsert(sealed=...)`: made before a
        transaction opens, so a SQLite write lock is not held while sealing (issue 15)."""
        return {str(r.record["id"]): self._row_values(r, position) for r in rows}

    def upsert(
        self, cur: Cursor, rows: Sequence[CustomerRow], position: int, *, fresh: frozenset[str] = frozenset(),
        sealed: dict[str, tuple[Any, ...]] | None = None,
    ) -> None:
        """Write each customer's current state; older versions never overwrite newer.

        Ids in `fresh` are known to have no row yet (a rebuild into emptied tables):
        they skip the version check and the index clean-up and go in as one batch.
        """
        fresh_rows = [r for r in rows if str(r.record["id"]) in fresh]
        if fresh_rows:
            cur.executemany(self._UPSERT, [sealed[str(r.record["id"])] if sealed else self._row_values(r, position)
                                           for r in fresh_rows])
            cur.executemany(
                "INSERT INTO rm_customer_search (field, digest, customer_id) VALUES (?, ?, ?)",
                [
                    (field, digest, str(r.record["id"]))
                    for r in fresh_rows
                    for field, digest in self.search_digests(r.record, r.pans)
                ],
            )
        for row_in in rows:
            record, pans = row_in.record, row_in.pans
            cid = str(record["id"])
            if cid in fresh:
                continue
            cur.execute("SELECT version FROM rm_customers WHERE customer_id = ?", (cid,))
            row = cur.fetchone()
            stored_version = None if row is None else (row["version"] if isinstance(row, dict) else row[0])
            if stored_version is not None and stored_version >= record["version"]:
                continue
            cur.execute(self._UPSERT, sealed[cid] if sealed else self._row_values(row_in, position))
            cur.execute("DELETE FROM rm_customer_search WHERE customer_id = ?", (cid,))
            cur.executemany(
                "INSERT INTO rm_customer_search (field, digest, customer_id) VALUES (?, ?, ?)",
                [(field, digest, cid) for field, digest in self.search_digests(record, pans)],
            )

    def _public_value(self, column: str, value: Any, pans: dict[str, str]) -> Any:
        # The read model never holds a full PAN: BIN and last four are all any role
        # may ever see (R1.7), plus a full-width keyed hash to confirm a search hit.
        # The number itself lives only in the encrypted events.
        if column == "cards" and value:
            return [
                {
                    "card_id": c["card_id"], "bin": c["bin"], "last4": c["last4"],
                    "expiry_month": c.get("expiry_month"),
                    "pan_hash": self.blind_index.full_digest("pan", values.normalise_pan(pans[c["card_id"]])),
                }
                for c in value
            ]
        return value

    def add_interactions(self, cur: Cursor, rows: Iterable[InteractionRow], position: int,
                         *, sealed: list[tuple[Any, ...]] | None = None) -> None:
        params = sealed if sealed is not None else self.sealed_interactions(rows, position)
        if params:
            cur.executemany(
                "INSERT INTO rm_interactions (interaction_id, customer_id, kind, channel, occurred_at, notes, position)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (interaction_id) DO NOTHING",
                params,
            )

    def sealed_interactions(self, rows: Iterable[InteractionRow], position: int) -> list[tuple[Any, ...]]:
        """The interaction rows' values with their notes sealed (see `sealed_rows`)."""
        return [
            (
                r.interaction_id, r.customer_id, r.kind, r.channel, r.occurred_at,
                self.sealer.seal(
                    "rm_interactions", "notes", r.customer_id, r.interaction_id, r.notes, field="notes"
                ),
                position,
            )
            for r in rows
        ]

    @staticmethod
    def purge(cur: Cursor, customer_id: str) -> None:
        """Remove every read-model trace of an erased customer (R5.4)."""
        for table in ("rm_customers", "rm_customer_search", "rm_interactions"):
            cur.execute(f"DELETE FROM {table} WHERE customer_id = ?", (customer_id,))  # nosec B608

    @staticmethod
    def track(cur: Cursor, position: int) -> None:
        cur.execute(
            "INSERT INTO rm_tracking (name, position) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
            " WHERE rm_tracking.position < excluded.position",
            (PROJECTION, position),
        )

    @staticmethod
    def clear(cur: Cursor) -> None:
        for table in ("rm_customers", "rm_customer_search", "rm_interactions", "rm_tracking"):
            cur.execute(f"DELETE FROM {table}")  # nosec B608

    # -- reading ---------------------------------------------------------------------------

    def position(self) -> int:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT position FROM rm_tracking WHERE name = ?", (PROJECTION,))
            row = cur.fetchone()
        return 0 if row is None else int(row[0])

    _RECORD = ("customer_id", *CLEAR_COLUMNS, *SEALED_COLUMNS)

    def get(self, customer_id: str) -> dict[str, Any] | None:
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT {', '.join(self._RECORD)} FROM rm_customers WHERE customer_id = ?", (customer_id,))  # nosec B608
            row = cur.fetchone()
        return None if row is None else self._record(row)

    def _record(self, row: Sequence[Any]) -> dict[str, Any]:
        record = dict(zip(self._RECORD, row, strict=True))
        customer_id = record.pop("customer_id")
        record["id"] = customer_id
        record["restricted"] = bool(record["restricted"])
        # One look at the erasure ledger for the row, not one per sealed column: on
        # SQLite each look is a query, and a read's eight made it hand the
        # interpreter lock over eight more times (issue 15 item 4).
        with self._steady():
            for column in SEALED_COLUMNS:
                record[column] = self.sealer.open("rm_customers", column, customer_id, customer_id, record[column])
        for card in record.get("cards") or []:
            card.pop("pan_hash", None)
        return record

    def _candidates(self, field: str, value: str, key_kinds: Sequence[str] = ()) -> tuple[
            str, list[Any], dict[tuple[str, str], WrappedKey] | None]:
        """The normalised value and the rows of its blind-index bucket, whole, in one
        query: the bucket's rows come from the same round trip as their index entries.

        With `keys_schema` set, the candidates' wrapped keys of `key_kinds` come in the
        same query (a missing one, destroyed, simply absent); else None for them."""
        wanted = SEARCH_NORMALISERS[field](value)
        digest = self.blind_index.digest(field, wanted)
        columns = ", ".join(f"c.{c}" for c in self._RECORD)
        kinds = list(key_kinds) if self.keys_schema is not None else []
        joins = "".join(
            f" LEFT JOIN {self.keys_schema}.data_keys k{n} ON k{n}.subject_id = s.customer_id AND k{n}.kind = ?"
            for n in range(len(kinds)))
        keys = "".join(f", k{n}.wrapped, k{n}.kek_id" for n in range(len(kinds)))
        with self.db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT {columns}{keys} FROM rm_customer_search s"  # nosec B608 - module constants only
                f" JOIN rm_customers c ON c.customer_id = s.customer_id{joins}"
                " WHERE s.field = ? AND s.digest = ? ORDER BY s.customer_id",
                (*kinds, field, digest),
            )
            rows = cur.fetchall()
        if not kinds:
            return wanted, rows, None
        width = len(self._RECORD)
        wrapped = {}
        for row in rows:
            for n, kind in enumerate(kinds):
                key, kek_id = row[width + 2 * n], row[width + 2 * n + 1]
                if key is not None:
                    wrapped[(row[0], kind)] = WrappedKey(row[0], kind, bytes(key), kek_id)
        return wanted, [row[:width] for row in rows], wrapped

    def _confirmed(self, field: str, wanted: str, row: Sequence[Any]) -> bool:
        """Whether a candidate's stored value equals `wanted`: only the compared column is
        opened (timing-safe comparison); a candidate whose key is destroyed is no match."""
        cid = row[0]
        column = "cards" if field == "pan" else field
        sealed = row[self._RECORD.index(column)]
        try:
            if field == "pan":
                # The read model keeps no PAN; a candidate is confirmed by the
                # full-width keyed hash kept beside each card.
                full = self.blind_index.full_digest("pan", wanted)
                stored_cards = self.sealer.open("rm_customers", "cards", cid, cid, sealed) or []
                return any(hmac.compare_digest(c.get("pan_hash", ""), full) for c in stored_cards)
            stored = self.sealer.open("rm_customers", field, cid, cid, sealed)
        except SubjectErased:
            return False
        return stored is not None and hmac.compare_digest(
            SEARCH_NORMALISERS[field](stored).encode(), wanted.encode())

    def find(self, field: str, value: str, *, limit: int = 50) -> list[str]:
        """Customer ids whose `field` equals `value` exactly (after normalisation)."""
        wanted, candidates, _ = self._candidates(field, value)
        # One query for every candidate's key, instead of one per candidate.
        self.sealer.keyring.prefetch([row[0] for row in candidates], key_for("cards" if field == "pan" else field))
        matches = []
        for row in candidates:
            if self._confirmed(field, wanted, row):
                matches.append(str(row[0]))
            if len(matches) >= limit:
                break
        return matches

    def find_records(self, field: str, value: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The records whose `field` equals `value` exactly, as `get` returns them.

        Issue 15 (lookup at a million): one query for the bucket's rows and one for
        their keys, or a single query when the key store shares this database
        (`keys_schema`). The compared kind is unwrapped for every candidate, the others
        held wrapped and unwrapped for the matches only; only the compared column of a
        candidate is decrypted, the whole record of a match.
        """
        compared = str(key_for("cards" if field == "pan" else field))
        others = sorted({str(key_for(c)) for c in SEALED_COLUMNS} - {compared})
        wanted, candidates, fetched = self._candidates(field, value, [compared, *others])
        held = self.sealer.keyring.prefetch([row[0] for row in candidates], compared, held=others, fetched=fetched)
        records = []
        for row in candidates:
            if self._confirmed(field, wanted, row):
                self.sealer.keyring.unwrap_held(held, row[0])
                records.append(self._record(row))
            if len(records) >= limit:
                break
        return records

    def page(self, *, portfolio: str | None = None, status: str | None = None,
             after: str | None = None, limit: int = 50) -> list[str]:
        clauses, params = [], []
        for column, value in (("portfolio", portfolio), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            clauses.append("customer_id > ?")
            params.append(after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT customer_id FROM rm_customers {where} ORDER BY customer_id LIMIT ?", (*params, limit))  # nosec B608
            return [row[0] for row in cur.fetchall()]

    def interactions(self, customer_id: str) -> list[dict[str, Any]]:
        with self.db.transaction(write=False) as cur:
            cur.execute(
                "SELECT interaction_id, kind, channel, occurred_at, notes FROM rm_interactions"
                " WHERE customer_id = ? ORDER BY occurred_at, interaction_id",
                (customer_id,),
            )
            rows = cur.fetchall()
        return [
            {
                "interaction_id": iid, "kind": kind, "channel": channel, "occurred_at": occurred_at,
                "notes": self.sealer.open(
                    "rm_interactions", "notes", customer_id, iid, notes, field="notes"
                ),
            }
            for iid, kind, channel, occurred_at, notes in rows
        ]

    def counts(self) -> dict[str, int]:
        with self.db.transaction(write=False) as cur:
            out = {}
            for table in ("rm_customers", "rm_customer_search", "rm_interactions"):
                cur.execute(f"SELECT COUNT(*) FROM {table}")  # nosec B608
                out[table] = int(cur.fetchone()[0])
        return out

