"""Every hand-written SQL statement of ``directory_sync``, with its SQLite fallback beside it.

- ``db``: the connection's primitives (is it PostgreSQL, the prepared cursor, the advisory
  lock, per-transaction settings and timeouts, bulk row inserts, the health ping). The only
  module that imports Django's private cursor classes.
- ``records``: the directory record write statements (insert, lock, update, a group's
  membership rows) with the outbox event each appends, assembled in one place; the engine's
  ``FOR SHARE`` record locks.
- ``reads``: the SCIM reads (hot lookups by userName/externalId/id, the open-run join, the
  probe) and the ORM reads of records.
- ``pages``: SCIM list pages and their totals from ``DirectoryRecordCount``.
- ``counts``: ``DirectoryRecordCount`` upkeep (fold, check, rebuild).
- ``filter_sql``: SCIM filters and ``sortBy`` as SQL on the columns and the stored document.

Services call these functions and contain no SQL; ``store`` imports models and the
process-state registry only (never a service, never ``scim``). ``tests/test_sql_in_store.py``
holds both rules.
"""
