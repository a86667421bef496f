"""Customers whose profile retention may have ended (R5.5), from the read model.

Only clear columns are read (status, modified_on, interaction times): nothing is
decrypted to pick the candidates. A closed record changes no more, so its
`modified_on` is when the relationship ended or later; with the newest interaction,
that is the last contact. Times are compared as ISO-8601 text in UTC, the form the
projection writes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from infrastructure.sql import Database


class ReadModelRetentionCandidates:
    """`application.ports.RetentionCandidates` over the projected customer tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def last_contact_before(self, cutoff: datetime) -> list[str]:
        when = cutoff.astimezone(UTC).isoformat()
        with self.db.transaction(write=False) as cur:
            cur.execute(
                "SELECT c.customer_id FROM rm_customers c WHERE c.status = 'closed' AND c.modified_on < ?"
                " AND NOT EXISTS (SELECT 1 FROM rm_interactions i"
                " WHERE i.customer_id = c.customer_id AND i.occurred_at >= ?)"
                " ORDER BY c.customer_id",
                (when, when),
            )
            return [str(row[0]) for row in cur.fetchall()]
