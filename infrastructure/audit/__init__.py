"""The audit trail's machinery (R3.3, R3.4, R6.3): the hash chain over every event
row, signed checkpoints of its head, verification, and evidence bundles.

`chain` says what a row's hash commits to; `signer` holds the Ed25519 audit key;
`checkpoints` writes signed heads to the database and a folder; `verify` walks the
chain; `bundle` writes and checks evidence for external auditors; `trail` wires
them for one instance; `roles` sets up PostgreSQL's owner and application roles.
"""
