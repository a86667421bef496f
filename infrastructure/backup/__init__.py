"""Backups of the event store and, apart, of the key store (R4.1-R4.4, R4.6).

A backup is rows exactly as stored (ciphertext, `recorded_at`, and whatever chain
columns the table has) in segment files, plus a signed manifest written last and
atomically. Keys travel in their own backup with their own manifest, so an event
backup alone can be verified but never read. See docs/operations.md.
"""
