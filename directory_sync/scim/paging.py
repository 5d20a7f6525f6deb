"""SCIM list pages: ``totalResults``, ``startIndex`` and the ``ListResponse`` of a page.

The page statements and why they seek instead of counting are in ``store.pages``. For an
unprojected page on PostgreSQL (``rendered_page``) the statement returns each document as the
database's JSON text and Python splices the resources together, so 100 stored documents are
neither parsed nor re-serialised.

Filtered lists (Entra's lookups return zero or one record) keep ``OFFSET`` and count only when
the page itself cannot tell the total: a page shorter than ``count`` ends the list.
"""

import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field

from django.db import DatabaseError, transaction
from django.db.models import QuerySet

from ..models import RECORD_COUNT_BLOCK, DirectoryRecord
from ..store import counts, db, pages
from .constants import ENTERPRISE_SCHEMA, LIST_RESPONSE_SCHEMA
from .documents import manager_id

logger = logging.getLogger(__name__)

# Past any directory, and far below the bigint limit of OFFSET and LIMIT arithmetic.
MAX_START_INDEX = 2**62


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


_EXTENSION_KEY = json.dumps(ENTERPRISE_SCHEMA) + ": "
_FALSY_JSON = ("{}", "null", "[]", '""', "0,", "0}", "false")


def _resource_json(row: tuple, *, resource_type: str, location: str, users_location: str) -> str:
    """One resource as ``json.dumps(adapter.to_dict())`` lays it out (``schemas``, ``id``, the
    document, ``meta``), from the database's JSON text of the document: Python only splices
    strings. ``location`` and ``users_location`` are JSON-escaped already."""
    _, _, scim_id, schemas, rest, created, updated, version, manager = row
    if manager:
        # A user's manager gets its $ref (RFC 7643 §4.3), as UserAdapter.to_dict adds it.
        plain = f'"manager": {{"value": "{manager}"}}'
        if plain in rest and json.dumps(manager)[1:-1] == manager:
            rest = rest.replace(
                plain,
                f'"manager": {{"value": "{manager}", "$ref": "{users_location}{manager}"}}',
                1,
            )
        else:  # not the canonical {"value": id}: do it on the parsed document
            rest = _with_manager_ref(rest, users_location)
    at = rest.find(_EXTENSION_KEY)
    if at >= 0 and rest.startswith(_FALSY_JSON, at + len(_EXTENSION_KEY)):
        # An empty extension is left out, as projection.Projection.apply does.
        document = json.loads(rest)
        if not document.get(ENTERPRISE_SCHEMA):
            document.pop(ENTERPRISE_SCHEMA, None)
        rest = json.dumps(document, ensure_ascii=False)
    inner = rest[1:-1]
    return (
        f'{{"schemas": {schemas}, "id": "{scim_id}", {inner + ", " if inner else ""}'
        f'"meta": {{"resourceType": "{resource_type}", "created": "{created}", '
        f'"lastModified": "{updated}", "location": "{location}{scim_id}", '
        f'"version": "W/\\"{version}\\""}}}}'
    )


def _with_manager_ref(rest: str, users_location: str) -> str:
    document = json.loads(rest)
    manager = manager_id(document)
    extension = dict(document[ENTERPRISE_SCHEMA])
    extension["manager"] = {"value": manager, "$ref": json.loads(f'"{users_location}"') + manager}
    document[ENTERPRISE_SCHEMA] = extension
    return json.dumps(document, ensure_ascii=False)


def _maybe_compact(organization_id: int, resource_type: str, extra_rows: int) -> None:
    if extra_rows <= counts.COMPACT_AFTER:
        return
    try:
        counts.counts_compact(organization_id=organization_id, resource_type=resource_type)
    except DatabaseError:  # a fold is housekeeping: the page is already read
        logger.exception("could not fold the directory record counts")


# --- pages -----------------------------------------------------------------------------------


def renders_in_database() -> bool:
    """Whether ``rendered_page`` can be used (its statement is PostgreSQL's SQL)."""
    return db.is_postgres()


def rendered_page(
    *, organization_id: int, resource_type: str, start: int, count: int, base_url: str
) -> Page:
    """An unfiltered page in one statement, its resources spliced from the documents' JSON text.

    The resources equal the adapters' ``to_dict()`` without projection (a group without
    ``members``: only for ``excludedAttributes=members``), in the same key order.
    """
    endpoint = "/Users/" if resource_type == DirectoryRecord.ResourceType.USER else "/Groups/"
    rows = pages.rendered_page_rows(
        organization_id=organization_id,
        resource_type=resource_type,
        start=start,
        count=count,
        manager_path=(
            (ENTERPRISE_SCHEMA, "manager", "value")
            if resource_type == DirectoryRecord.ResourceType.USER
            else None
        ),
    )
    total, extra_rows = rows[0][0], rows[0][1]
    _maybe_compact(organization_id, resource_type, extra_rows)
    if rows[0][2] is None:
        return Page(total=total, start=start, resources_json="")
    location = json.dumps(base_url + endpoint)[1:-1]
    users_location = json.dumps(base_url + "/Users/")[1:-1]
    return Page(
        total=total,
        start=start,
        resources_json=", ".join(
            _resource_json(
                row,
                resource_type=resource_type,
                location=location,
                users_location=users_location,
            )
            for row in rows
        ),
        scim_ids=[row[2] for row in rows],
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
    """A page of ``records`` (``store.reads.record_list``, ordered by primary key) as instances."""
    if filtered:
        return _filtered_page(records, start=start, count=count)
    # SQLite: one transaction (its write lock, see counts_compact) so the counts and the page
    # agree. PostgreSQL reads them in two statements, as COUNT(*) and OFFSET did.
    atomic = not db.is_postgres()
    with transaction.atomic() if atomic else nullcontext():
        total, extra_rows, block, before = pages.page_window(organization_id, resource_type, start)
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
