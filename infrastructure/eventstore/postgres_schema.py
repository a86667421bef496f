"""The PostgreSQL schema objects behind one application's event log.

Stored layout (`<schema>.<name>_events`; the library's columns first, unchanged,
then ours):

    originator_id       uuid        PRIMARY KEY (originator_id, originator_version)
    originator_version  bigint
    topic               text
    state               bytea       the ciphertext (infrastructure/crypto/envelope.py)
    notification_id     bigserial   unique index (the library's)
    recorded_at         timestamptz index on (recorded_at, notification_id)
    prev_hash, row_hash bytea       32 bytes each: the chain (infrastructure/audit/chain.py)

and beside it:

- `audit_chain_format` (events_table, version, from_position): the first position
  chained the v2 way (chain.py), recorded once, under the table lock, when the
  table is created or first opened by a version that chains v2.

- `<table>_insert_timed(events[])`, the stored function through which every row is
  inserted: it takes `LOCK TABLE ... IN EXCLUSIVE MODE`, reads the last row, stamps
  `max(clock_timestamp(), last stamp)` and chains onto the last row's hash, so no
  other writer can chain onto the same row and the stamp never decreases as the id
  grows; every row of one call shares one stamp. It hashes v2, reading the
  metadata digest from the state's clear header (envelope format 2; zeros for a
  bare state, which `audit verify` names). It is named per table because the
  library's function is named per id type only (es_insert_events_uuid): two
  applications in one schema would overwrite each other's, and the one created
  last would receive both applications' events. It is SECURITY DEFINER, and PUBLIC
  may not execute it, so the application's role needs only SELECT and EXECUTE and
  cannot write a row with a hash of its own choosing (`strongroom db roles`, R3.4).
- triggers refusing UPDATE, DELETE and TRUNCATE, even to the owner (R3.4).

Names past PostgreSQL's 63 bytes are shortened with a hash (`derived_identifier`),
since PostgreSQL would silently truncate them and two long tables could collide.
The recorder (postgres.py) adds these statements to the library's own.
"""

from __future__ import annotations

import hashlib

from psycopg.sql import SQL, Composed, Identifier, Literal

from eventsourcing.postgres import PostgresRecorder
from infrastructure.audit.chain import CHAIN_FORMAT_TABLE, CHAIN_TAG_V2, GENESIS, HASH_BYTES, NO_METADATA, V2_HEADER
from infrastructure.eventstore.shared import APPEND_ONLY_MESSAGE

__all__ = [
    "append_only_statements",
    "chain_format_statements",
    "chained_insert_function",
    "derived_identifier",
    "events_table",
    "recorded_at_index",
]

APPEND_ONLY_FUNCTION = "strongroom_refuse_change"


def derived_identifier(table: str, suffix: str) -> str:
    """`table + suffix`, shortened with a hash when PostgreSQL would truncate it.

    PostgreSQL silently truncates identifiers past 63 bytes, which could make two
    long table names share one index or function; the hash keeps them apart.
    """
    name = table + suffix
    if len(name.encode()) <= PostgresRecorder.MAX_IDENTIFIER_LEN:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    keep = PostgresRecorder.MAX_IDENTIFIER_LEN - len(suffix) - len(digest) - 1
    return f"{table[:keep]}_{digest}{suffix}"


def events_table(schema: str, table: str, originator_id_type: str) -> Composed:
    """The library's table with `recorded_at` and the two hashes added."""
    return SQL(
        "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
        "originator_id {originator_id_type} NOT NULL, "
        "originator_version bigint NOT NULL, "
        "topic text, "
        "state bytea, "
        "notification_id bigserial, "
        "recorded_at timestamptz NOT NULL, "
        "prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = {bytes}), "
        "row_hash bytea NOT NULL CHECK (octet_length(row_hash) = {bytes}), "
        "PRIMARY KEY "
        "(originator_id, originator_version)) "
        "WITH ("
        "    autovacuum_enabled = true,"
        "    autovacuum_vacuum_threshold = 100000000,"
        "    autovacuum_vacuum_scale_factor = 0.5,"
        "    autovacuum_analyze_threshold = 1000,"
        "    autovacuum_analyze_scale_factor = 0.01"
        ")"
    ).format(
        schema=Identifier(schema),
        table=Identifier(table),
        originator_id_type=Identifier(originator_id_type),
        bytes=Literal(HASH_BYTES),
    )


def recorded_at_index(schema: str, table: str, index: str) -> Composed:
    """`position_at` and `version_at` are answered from it, one probe each."""
    return SQL(
        "CREATE INDEX IF NOT EXISTS {index} "
        "ON {schema}.{table} (recorded_at, notification_id)"
    ).format(
        index=Identifier(index),
        schema=Identifier(schema),
        table=Identifier(table),
    )


def chained_insert_function(
    *, schema: str, table: str, function: str, event_type: str, channel: str, lock_timeout: int
) -> Composed:
    """The stored function: lock, read the last row, stamp, chain, insert.

    Inside a VOLATILE plpgsql function each statement takes a fresh READ
    COMMITTED snapshot, so the SELECT after the LOCK sees the last committed
    row, and no other writer can chain onto it until this transaction ends.
    Positions are taken from the sequence one by one, so each row's hash
    commits to the notification id it really gets. The bytes hashed are those
    of `infrastructure.audit.chain.row_hash`.
    """
    qualified = ".".join(
        '"' + name.replace('"', '""') + '"'
        for name in (schema, table)
    )
    return SQL(
        "CREATE OR REPLACE FUNCTION "
        "{schema}.{function}(events {schema}.{event}[]) "
        "RETURNS SETOF bigint "
        "LANGUAGE plpgsql "
        "SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp "
        "AS "
        "$BODY$ "
        "DECLARE "
        "    stamp timestamptz; "
        "    stamp_us bigint; "
        "    prev bytea; "
        "    pos bigint; "
        "    h bytea; "
        "    sid bytea; "
        "    top bytea; "
        "    md bytea; "
        "    seq regclass; "
        "    e record; "
        "BEGIN "
        "    SET LOCAL lock_timeout = '{lock_timeout}s'; "
        "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
        "    NOTIFY {channel}; "
        "    SELECT t.recorded_at, t.row_hash INTO stamp, prev "
        "        FROM {schema}.{table} AS t "
        "        ORDER BY t.notification_id DESC LIMIT 1; "
        "    stamp := GREATEST(clock_timestamp(), stamp); "
        "    stamp_us := (extract(epoch FROM stamp) * 1000000)::bigint; "
        "    prev := coalesce(prev, {genesis}); "
        "    seq := pg_get_serial_sequence({qualified}, 'notification_id')::regclass; "
        "    FOR e IN SELECT u.originator_id, u.originator_version, u.topic, u.state "
        "             FROM unnest(events) AS u LOOP "
        "        pos := nextval(seq); "
        "        sid := convert_to(e.originator_id::text, 'UTF8'); "
        "        top := convert_to(e.topic, 'UTF8'); "
        "        IF substring(e.state FROM 1 FOR 3) = {header} "
        "           AND octet_length(e.state) >= {header_bytes} THEN "
        "            md := substring(e.state FROM 4 FOR {bytes}); "
        "        ELSE "
        "            md := {no_metadata}; "
        "        END IF; "
        "        h := sha256({tag} || prev || int8send(pos) "
        "            || int4send(octet_length(sid)) || sid "
        "            || int8send(e.originator_version) "
        "            || int4send(octet_length(top)) || top "
        "            || int8send(stamp_us) || sha256(e.state) || md); "
        "        INSERT INTO {schema}.{table} (notification_id, originator_id, "
        "            originator_version, topic, state, recorded_at, prev_hash, row_hash) "
        "        VALUES (pos, e.originator_id, e.originator_version, e.topic, e.state, "
        "            stamp, prev, h); "
        "        prev := h; "
        "        RETURN NEXT pos; "
        "    END LOOP; "
        "END; "
        "$BODY$"
    ).format(
        schema=Identifier(schema),
        function=Identifier(function),
        event=Identifier(event_type),
        table=Identifier(table),
        lock_timeout=lock_timeout,
        channel=Identifier(channel),
        genesis=Literal(GENESIS),
        tag=Literal(CHAIN_TAG_V2),
        qualified=Literal(qualified),
        header=Literal(V2_HEADER),
        header_bytes=Literal(len(V2_HEADER) + HASH_BYTES),
        bytes=Literal(HASH_BYTES),
        no_metadata=Literal(NO_METADATA),
    )


def chain_format_statements(*, schema: str, table: str) -> list[Composed]:
    """The table recording where chain v2 starts, and the record for `table`.

    Recorded once: a new table chains v2 from position 1; a table with rows from
    the upgrade (the rows before keep their v1 hashes). It runs in the same
    transaction as the replacement of the insert function, and takes the table
    lock first, so no row is chained between the max() and the record.
    """
    schema_id, table_id = Identifier(schema), Identifier(table)
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.{format} ("
            "events_table text NOT NULL, version integer NOT NULL, "
            "from_position bigint NOT NULL, PRIMARY KEY (events_table, version))"
        ).format(schema=schema_id, format=Identifier(CHAIN_FORMAT_TABLE)),
        SQL(
            "DO $BODY$ BEGIN "
            "IF NOT EXISTS (SELECT 1 FROM {schema}.{format} "
            "               WHERE events_table = {name} AND version = 2) THEN "
            "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
            "    INSERT INTO {schema}.{format} (events_table, version, from_position) "
            "        SELECT {name}, 2, coalesce(max(notification_id), 0) + 1 FROM {schema}.{table} "
            "        ON CONFLICT DO NOTHING; "
            "END IF; "
            "END $BODY$"
        ).format(schema=schema_id, format=Identifier(CHAIN_FORMAT_TABLE), table=table_id, name=Literal(table)),
    ]


def append_only_statements(
    *, schema: str, table: str, function: str, event_type: str
) -> list[Composed]:
    """Triggers refusing UPDATE, DELETE and TRUNCATE, even to the owner (R3.4).

    Crypto-shredding destroys keys, never rows, so nothing legitimate is
    refused. A superuser can still disable triggers; the chain and the signed
    checkpoints are what catch what such a person changes.
    """
    event = Identifier(event_type)
    function_name = Identifier(function)
    refuse = Identifier(APPEND_ONLY_FUNCTION)
    schema_id, table_id = Identifier(schema), Identifier(table)
    return [
        SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{refuse}() RETURNS trigger "
            "LANGUAGE plpgsql AS $BODY$ BEGIN "
            "RAISE EXCEPTION '%: % on %.% refused', {message}, TG_OP, "
            "TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; "
            "END; $BODY$"
        ).format(schema=schema_id, refuse=refuse, message=Literal(APPEND_ONLY_MESSAGE)),
        SQL(
            "CREATE OR REPLACE TRIGGER {trigger} BEFORE UPDATE OR DELETE "
            "ON {schema}.{table} FOR EACH ROW EXECUTE FUNCTION {schema}.{refuse}()"
        ).format(
            trigger=Identifier(derived_identifier(table, "_append_only")),
            schema=schema_id, table=table_id, refuse=refuse,
        ),
        SQL(
            "CREATE OR REPLACE TRIGGER {trigger} BEFORE TRUNCATE "
            "ON {schema}.{table} FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{refuse}()"
        ).format(
            trigger=Identifier(derived_identifier(table, "_no_truncate")),
            schema=schema_id, table=table_id, refuse=refuse,
        ),
        # PostgreSQL lets PUBLIC execute new functions; only roles granted it by
        # `strongroom db roles` (and the owner) may append events.
        SQL("REVOKE ALL ON FUNCTION {schema}.{function}({schema}.{event}[]) FROM PUBLIC").format(
            schema=schema_id, function=function_name, event=event,
        ),
    ]
