"""SCIM list pages: an exact ``totalResults`` and ``startIndex`` as an indexed seek.

RFC 7644 §3.4.2.4 pages are 1-based positions in a stable order (the primary key here).
``COUNT(*)`` for ``totalResults`` and ``OFFSET`` for ``startIndex`` both read every row before
the page: at 100,000 users a page in the middle cost ~80 ms of PostgreSQL CPU (bench/RESULTS.md).
Instead, ``DirectoryRecordCount`` says how many live records of an organization and resource
type each block of ``RECORD_COUNT_BLOCK`` consecutive primary keys holds, kept exact by
database triggers in the same transaction as every record write (see the model). A page then
costs O(blocks + page):

- ``totalResults`` is the sum of the counts;
- the page starts in the block where the running sum reaches ``startIndex``, so the
  database skips at most one block's rows (an ``OFFSET`` below ``RECORD_COUNT_BLOCK``) from
  an index range scan on ``(organization, resource_type, id)`` instead of every earlier row.

On PostgreSQL one statement reads the counts and the page, so ``totalResults`` and the page
come from one snapshot and equal ``COUNT(*)`` and ``OFFSET`` on it (today's two statements
could disagree). For an unprojected page that statement also renders the resources as JSON
text (``render=True``), so 100 stored documents are not parsed and re-serialised in Python.

Filtered lists (Entra's lookups return zero or one record) keep ``OFFSET`` and count only when
the page itself cannot tell the total: a page shorter than ``count`` ends the list.
"""

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet

from .. import record_counts
from ..models import RECORD_COUNT_BLOCK, DirectoryRecord, DirectoryRecordCount
from .documents import ENTERPRISE_SCHEMA

logger = logging.getLogger(__name__)

# Past any directory, and far below the bigint limit of OFFSET and LIMIT arithmetic.
MAX_START_INDEX = 2**62

_RECORDS = DirectoryRecord._meta.db_table
_COUNTS = DirectoryRecordCount._meta.db_table
LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


@dataclass
class Page:
    """One list page: ``records`` (model instances) or, rendered, ``resources_json`` (the
    JSON text of the ``Resources`` array's items, comma-separated) and their ``scim_ids``."""

    total: int
    start: int
    records: list[DirectoryRecord] = field(default_factory=list)
    resources_json: str | None = None
    scim_ids: list[str] = field(default_factory=list)

    def ids(self) -> list[str]:
        if self.resources_json is not None:
            return self.scim_ids
        return [str(record.scim_id) for record in self.records]

    @property
    def items(self) -> int:
        return len(self.scim_ids) if self.resources_json is not None else len(self.records)

    def body(self) -> str:
        """The ListResponse of a rendered page, as ``discovery.list_response`` lays it out."""
        return (
            f'{{"schemas": ["{LIST_RESPONSE_SCHEMA}"], "totalResults": {self.total}, '
            f'"itemsPerPage": {self.items}, "startIndex": {self.start}, '
            f'"Resources": [{self.resources_json or ""}]}}'
        )


# --- the counts ------------------------------------------------------------------------------

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


def _iso(column: str) -> str:
    """``datetime.isoformat()`` of an aware UTC timestamp, as the adapters render ``meta``."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second', "
        f"{column}) = {column} THEN '' ELSE to_char({utc}, '.US') END || '+00:00'"
    )


def _document_sql(resource_type: str) -> str:
    """The stored document as the adapter answers it: a user's manager gets its ``$ref``, an
    empty enterprise extension is left out (as ``views.project`` does)."""
    if resource_type != DirectoryRecord.ResourceType.USER:
        return "r.document"
    manager = f"'{{{ENTERPRISE_SCHEMA},manager,value}}'"
    return f"""CASE
        WHEN r.document #>> {manager} <> '' THEN jsonb_set(
            r.document, '{{{ENTERPRISE_SCHEMA},manager}}',
            jsonb_build_object(
                'value', r.document #> {manager},
                '$ref', %(users_location)s || (r.document #>> {manager})))
        WHEN r.document -> '{ENTERPRISE_SCHEMA}' IN ('{{}}'::jsonb, 'null'::jsonb)
            THEN r.document - '{ENTERPRISE_SCHEMA}'
        ELSE r.document END"""


def _resource_sql(resource_type: str) -> str:
    """One resource as JSON text, laid out as ``json.dumps(adapter.to_dict())``: ``schemas``,
    ``id``, the rest of the document, ``meta``."""
    return f"""'{{"schemas": ' || (r.document -> 'schemas')::text
        || ', "id": "' || r.scim_id::text || '"'
        || COALESCE(', ' || NULLIF(substr(d.rest, 2, length(d.rest) - 2), ''), '')
        || ', "meta": {{"resourceType": "{resource_type}", "created": "' || {_iso("r.created_at")}
        || '", "lastModified": "' || {_iso("r.updated_at")}
        || '", "location": ' || to_json(%(location)s || r.scim_id::text)::text
        || ', "version": "W/\\"' || r.version::text || '\\""}}}}'"""


def _page_sql(resource_type: str) -> str:
    return f"""
WITH {_WINDOW_CTES},
page AS (
    SELECT r.id, r.scim_id, {_resource_sql(resource_type)} AS body
    FROM (
        -- Rendered after OFFSET: the rows skipped in the block are only read.
        SELECT id, scim_id, document, created_at, updated_at, version
        FROM {_RECORDS}
        WHERE organization_id = %(organization)s AND resource_type = %(resource_type)s
            AND deleted_at IS NULL
            AND id >= (SELECT block * {RECORD_COUNT_BLOCK} FROM target)
        ORDER BY id
        OFFSET (SELECT %(start)s - 1 - before FROM target)
        LIMIT %(count)s
    ) r
    CROSS JOIN LATERAL (
        SELECT (({_document_sql(resource_type)}) - 'schemas')::text AS rest
    ) d
)
SELECT {_TOTALS},
    (SELECT string_agg(scim_id::text, ',' ORDER BY id) FROM page),
    (SELECT string_agg(body, ', ' ORDER BY id) FROM page)"""


def _params(organization_id: int, resource_type: str, start: int) -> dict:
    return {"organization": organization_id, "resource_type": resource_type, "start": start}


def _window(organization_id: int, resource_type: str, start: int) -> tuple:
    """``(total, count rows beyond one per block, block holding start or None, live records
    before that block)``."""
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW_SQL, _params(organization_id, resource_type, start))
        return cursor.fetchone()


def _maybe_compact(organization_id: int, resource_type: str, extra_rows: int) -> None:
    if extra_rows <= record_counts.COMPACT_AFTER:
        return
    try:
        record_counts.counts_compact(organization_id=organization_id, resource_type=resource_type)
    except DatabaseError:  # a fold is housekeeping: the page is already read
        logger.exception("could not fold the directory record counts")


# --- pages -----------------------------------------------------------------------------------


def renders_in_database() -> bool:
    """Whether ``rendered_page`` can be used (PostgreSQL's JSON functions)."""
    return connection.vendor == "postgresql"


def rendered_page(
    *, organization_id: int, resource_type: str, start: int, count: int, base_url: str
) -> Page:
    """An unfiltered page with its resources rendered by PostgreSQL, in one statement.

    The resources equal ``json.dumps`` of the adapters' ``to_dict()`` without projection
    (a group without ``members``: only for ``excludedAttributes=members``), key for key.
    """
    endpoint = "/Users/" if resource_type == DirectoryRecord.ResourceType.USER else "/Groups/"
    params = _params(organization_id, resource_type, start)
    params.update(count=count, location=base_url + endpoint, users_location=base_url + "/Users/")
    with connection.cursor() as cursor:
        cursor.execute(_page_sql(resource_type), params)
        total, extra_rows, ids, resources = cursor.fetchone()
    _maybe_compact(organization_id, resource_type, extra_rows)
    return Page(
        total=total,
        start=start,
        resources_json=resources or "",
        scim_ids=ids.split(",") if ids else [],
    )


def record_page(
    records: QuerySet[DirectoryRecord],
    *,
    organization_id: int,
    resource_type: str,
    start: int,
    count: int,
    filtered: bool,
) -> Page:
    """A page of ``records`` (``queries.record_list``, ordered by primary key) as instances."""
    if filtered:
        return _filtered_page(records, start=start, count=count)
    # SQLite: one transaction (its write lock, see counts_compact) so the counts and the page
    # agree. PostgreSQL reads them in two statements, as COUNT(*) and OFFSET did.
    atomic = connection.vendor != "postgresql"
    with transaction.atomic() if atomic else nullcontext():
        total, extra_rows, block, before = _window(organization_id, resource_type, start)
        page: list[DirectoryRecord] = []
        if count and block is not None and start <= total:
            skip = start - 1 - before
            page = list(records.filter(pk__gte=block * RECORD_COUNT_BLOCK)[skip : skip + count])
    _maybe_compact(organization_id, resource_type, extra_rows)
    return Page(total=total, start=start, records=page)


def _filtered_page(records: QuerySet[DirectoryRecord], *, start: int, count: int) -> Page:
    page = list(records[start - 1 : start - 1 + count]) if count else []
    if 0 < len(page) < count or (start == 1 and len(page) < count):
        # The page ends the list: everything before it and on it is the total. Entra's
        # lookups (one or no record, count absent) need no COUNT(*) then.
        total = start - 1 + len(page)
    else:
        total = records.count()
    return Page(total=total, start=start, records=page)
