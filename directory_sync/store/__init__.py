"""Every hand-written SQL statement of ``directory_sync``, with its SQLite fallback beside it.

- ``db``: the connection's primitives (is it PostgreSQL, the prepared cursor, advisory locks,
  per-transaction and per-session settings, bulk row inserts, the health ping). The only
  module that imports Django's private cursor classes.
- ``records``: the directory record write statements (insert, lock, update) with the outbox
  event each appends, assembled in one place; the record row locks of the engine.
- ``reads``: the SCIM reads (hot lookups by userName/externalId/id, the open-run join, the
  probe) and the ORM reads of records.
- ``pages``: SCIM list pages and their totals from ``DirectoryRecordCount``.
- ``counts``: ``DirectoryRecordCount`` upkeep (fold, check, rebuild).

Services call these functions and contain no SQL; ``store`` imports models only (never a
service, never ``scim``).
"""
