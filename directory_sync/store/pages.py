"""SCIM list pages: an exact ``totalResults`` and ``startIndex`` as an indexed seek.

RFC 7644 §3.4.2.4 pages are 1-based positions in a stable order (the primary key here).
``COUNT(*)`` for ``totalResults`` and ``OFFSET`` for ``startIndex`` both read every row before
the page, which grows with the directory. Instead, ``DirectoryRecordCount`` says how many live
records of an organization and resource type each block of ``RECORD_COUNT_BLOCK`` consecutive
primary keys holds, kept exact by database triggers in the same transaction as every record
write (see the model). A page then costs O(blocks + page):

- ``totalResults`` is the sum of the counts;
- the page starts in the block where the running sum reaches ``startIndex``, so the
  database skips at most one block's rows (an ``OFFSET`` below ``RECORD_COUNT_BLOCK``) from
  an index range scan on ``(organization, resource_type, id)`` instead of every earlier row.

On PostgreSQL one statement (``rendered_page_rows``) reads the counts and the page, so
``totalResults`` and the page come from one snapshot and equal ``COUNT(*)`` and ``OFFSET`` on
it; it returns each document as the database's JSON text for ``scim.paging`` to splice. The
SQLite fallback (``page_window``, then the page through the ORM) reads both in one
transaction, which holds SQLite's write lock.
"""

from django.db import connection

from ..models import RECORD_COUNT_BLOCK, DirectoryRecord, DirectoryRecordCount

_RECORDS = DirectoryRecord._meta.db_table
_COUNTS = DirectoryRecordCount._meta.db_table

# Per block: its live records and the running sum before it; the block holding position
# %(start)s is the last non-empty one with fewer than %(start)s records before it.
_WINDOW_CTES = f"""
blocks AS (
    SELECT block, SUM(live) AS live, COUNT(*) AS count_rows
    FROM {_COUNTS}
    WHERE organization_id = %(organization)s AND resource_type = %(resource_type)s
    GROUP BY block
),
running AS (
    SELECT block, live, CAST(SUM(live) OVER (ORDER BY block) - live AS BIGINT) AS before
    FROM blocks
),
target AS (
    SELECT block, before FROM running
    WHERE live > 0 AND before < %(start)s
    ORDER BY block DESC
    LIMIT 1
)"""
_TOTALS = """
    (SELECT CAST(COALESCE(SUM(live), 0) AS BIGINT) FROM blocks),
    (SELECT CAST(COALESCE(SUM(count_rows), 0) - COUNT(*) AS BIGINT) FROM blocks)"""

_WINDOW_SQL = f"""
WITH {_WINDOW_CTES}
SELECT {_TOTALS}, target.block, target.before
FROM (SELECT 1 AS one) one LEFT JOIN target ON 1 = 1"""


def _params(organization_id: int, resource_type: str, start: int) -> dict:
    return {"organization": organization_id, "resource_type": resource_type, "start": start}


def page_window(organization_id: int, resource_type: str, start: int) -> tuple:
    """``(total, count rows beyond one per block, block holding start or None, live records
    before that block)``; the page is then the records from ``block * RECORD_COUNT_BLOCK``
    on, skipping ``start - 1 - before`` of them."""
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW_SQL, _params(organization_id, resource_type, start))
        return cursor.fetchone()


def _iso(column: str) -> str:
    """``datetime.isoformat()`` of an aware UTC timestamp, as the adapters render ``meta``."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second', "
        f"{column}) = {column} THEN '' ELSE to_char({utc}, '.US') END || '+00:00'"
    )


def _page_sql(manager_path: tuple[str, ...] | None) -> str:
    """Totals and the page's rows, as text pieces. On an empty page, one row with the totals
    and NULLs."""
    manager = f"r.document #>> '{{{','.join(manager_path)}}}'" if manager_path else "NULL"
    return f"""
WITH {_WINDOW_CTES},
totals AS (
    SELECT CAST(COALESCE(SUM(live), 0) AS BIGINT) AS total,
        CAST(COALESCE(SUM(count_rows), 0) - COUNT(*) AS BIGINT) AS extra_rows
    FROM blocks
),
page AS (
    SELECT id, scim_id, document, created_at, updated_at, version
    FROM {_RECORDS}
    WHERE organization_id = %(organization)s AND resource_type = %(resource_type)s
        AND deleted_at IS NULL
        AND id >= (SELECT block * {RECORD_COUNT_BLOCK} FROM target)
    ORDER BY id
    OFFSET (SELECT %(start)s - 1 - before FROM target)
    LIMIT %(count)s
)
SELECT totals.total, totals.extra_rows, r.scim_id::text, (r.document -> 'schemas')::text,
    (r.document - 'schemas')::text, {_iso("r.created_at")}, {_iso("r.updated_at")},
    r.version, {manager}
FROM totals LEFT JOIN page r ON TRUE
ORDER BY r.id"""


def rendered_page_rows(
    *,
    organization_id: int,
    resource_type: str,
    start: int,
    count: int,
    manager_path: tuple[str, ...] | None,
) -> list[tuple]:
    """An unfiltered page and its totals in one statement (PostgreSQL only). Rows of
    ``(total, count rows beyond one per block, scim id, schemas JSON, the document without
    schemas as JSON, created, lastModified, version, the text at manager_path)``, the
    ISO timestamps as ``datetime.isoformat()`` writes them; on an empty page, one row with
    the totals and NULLs."""
    params = _params(organization_id, resource_type, start)
    params["count"] = count
    with connection.cursor() as cursor:
        cursor.execute(_page_sql(manager_path), params)
        return cursor.fetchall()
