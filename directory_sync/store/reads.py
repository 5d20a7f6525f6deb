"""Reads of directory records for SCIM answers, always scoped to one organization, and the
organization's open provisioning run.

Tombstoned records (``deleted_at`` set) are invisible here. Lists are ordered by primary key
so ``startIndex`` pagination is stable, and counted/sliced in the database.

Entra's per-cycle lookups (userName/externalId eq, GET by id, the probe) are most of its
traffic. Compiling an ORM query costs more CPU than PostgreSQL spends answering it, so on
PostgreSQL these reads use fixed SQL through the prepared cursor and return plain rows
(``RecordRow``) that ``documents.*_resource`` render without building model instances; a
read learns the open run in the same statement. SQLite (the embedded default) has no LATERAL,
ARRAY() or ::casts: each fallback, right below its statement, gives the same answer through
the ORM in a few statements.
"""

import json
import uuid
from collections import defaultdict

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Q, QuerySet

from members.models import Organization

from ..models import ChangeEvent, DirectoryMembership, DirectoryRecord, ProvisioningRun
from .db import is_postgres, prepared_cursor

# --- ORM reads -------------------------------------------------------------------------------


def scim_uuid(value) -> uuid.UUID | None:
    """``value`` as a UUID, or None: a SCIM id that is not a UUID cannot be one of ours."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def record_list(
    *,
    organization: Organization,
    resource_type: str,
    query: Q | None = None,
    ordering: list | None = None,
) -> QuerySet[DirectoryRecord]:
    qs = DirectoryRecord.objects.filter(
        organization=organization, resource_type=resource_type, deleted_at__isnull=True
    )
    if query is not None:
        qs = qs.filter(query)
    return qs.order_by(*(ordering or ["pk"]))


def record_get(
    *, organization: Organization, resource_type: str, scim_id: str
) -> DirectoryRecord | None:
    key = scim_uuid(scim_id)
    if key is None:
        return None
    return (
        record_list(organization=organization, resource_type=resource_type)
        .filter(scim_id=key)
        .first()
    )


def user_exists(*, organization: Organization, scim_id: str) -> bool:
    return record_get(organization=organization, resource_type="User", scim_id=scim_id) is not None


def group_members(*, group_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """``{group pk: [(user scim id, display), ...]}`` for live users, in one query."""
    members: dict[int, list[tuple[str, str]]] = defaultdict(list)
    if not group_ids:
        return members
    rows = (
        DirectoryMembership.objects.filter(
            group_record_id__in=group_ids, user_record__deleted_at__isnull=True
        )
        .order_by("group_record_id", "user_record_id")
        .values_list(
            "group_record_id",
            "user_record__scim_id",
            "user_record__display_name",
            "user_record__user_name",
        )
    )
    for group_id, scim_id, display_name, user_name in rows:
        members[group_id].append((str(scim_id), display_name or user_name or ""))
    return members


# --- the open run ----------------------------------------------------------------------------

RUN_FIELDS = [f.attname for f in ProvisioningRun._meta.concrete_fields]
_RUN_TABLE = ProvisioningRun._meta.db_table
_TABLE = DirectoryRecord._meta.db_table
_MEMBERSHIP_TABLE = DirectoryMembership._meta.db_table

# The open run (as ``run_current``: the partial index provisioning_run_open answers it) and
# whether a change was recorded in it, for a statement to read alongside its own rows; the
# lateral join takes the organization id as its parameter.
_OPEN_RUN_COLUMNS = ", ".join(f"pr.{name}" for name in RUN_FIELDS) + (
    f", EXISTS(SELECT 1 FROM {ChangeEvent._meta.db_table} e WHERE e.run_id = pr.id)"
)
_OPEN_RUN_COLUMN_COUNT = len(RUN_FIELDS) + 1
_OPEN_RUN_LATERAL = (
    f"LEFT JOIN LATERAL (SELECT * FROM {_RUN_TABLE} WHERE organization_id = %s "
    "AND ended_at IS NULL ORDER BY started_at DESC, id DESC LIMIT 1) pr ON TRUE"
)
# The open run's own columns, for a write's statement (``store.records``):
# ``run_columns(alias)`` over ``OPEN_RUN_SELECT`` (parameter: organization id).
OPEN_RUN_SELECT = (
    f"SELECT * FROM {_RUN_TABLE} WHERE organization_id = %s AND ended_at IS NULL "
    "ORDER BY started_at DESC, id DESC LIMIT 1"
)
_PROBE_MATCH_SQL = (
    f"EXISTS(SELECT 1 FROM {_TABLE} d WHERE d.organization_id = %s "
    "AND d.resource_type = %s AND d.user_name_key = %s AND d.deleted_at IS NULL)"
)


def run_columns(alias: str) -> str:
    return ", ".join(f"{alias}.{name}" for name in RUN_FIELDS)


def run_from_values(values) -> ProvisioningRun | None:
    """The run in ``run_columns`` values (all NULL: no open run)."""
    if values[0] is None:
        return None
    return ProvisioningRun.from_db(connection.alias, RUN_FIELDS, list(values))


def run_current(*, organization: Organization | int) -> ProvisioningRun | None:
    """The organization's open run (not ended), if any."""
    return (
        ProvisioningRun.objects.filter(organization=organization, ended_at__isnull=True)
        .order_by("-started_at", "-id")
        .first()
    )


def _open_run_from_row(values) -> tuple[ProvisioningRun | None, bool]:
    """``(open run or None, a change was recorded in it)`` from ``_OPEN_RUN_COLUMNS``."""
    run = None
    if values[0] is not None:
        run = ProvisioningRun.from_db(DEFAULT_DB_ALIAS, RUN_FIELDS, values[: len(RUN_FIELDS)])
    return run, bool(values[len(RUN_FIELDS)])


def _open_run_orm(*, organization_id: int) -> tuple[ProvisioningRun | None, bool]:
    """``(open run or None, a change was recorded in it)`` through the ORM (SQLite)."""
    run = run_current(organization=organization_id)
    return run, run is not None and ChangeEvent.objects.filter(run=run).exists()


def open_run_and_probe_match(
    *, organization_id: int, probe_key: str | None
) -> tuple[ProvisioningRun | None, bool, bool]:
    """``(open run or None, a change was recorded in it, a live user's user_name_key is
    probe_key)`` in one statement (PostgreSQL)."""
    if not is_postgres():
        run, changed = _open_run_orm(organization_id=organization_id)
        matches = probe_key is not None and (
            DirectoryRecord.objects.filter(
                organization_id=organization_id,
                resource_type=DirectoryRecord.ResourceType.USER,
                user_name_key=probe_key,
                deleted_at__isnull=True,
            ).exists()
        )
        return run, changed, matches
    params: list = []
    probe_sql = "FALSE"
    if probe_key is not None:
        probe_sql = _PROBE_MATCH_SQL
        params += [organization_id, DirectoryRecord.ResourceType.USER, probe_key]
    sql = f"SELECT {_OPEN_RUN_COLUMNS}, {probe_sql} FROM (SELECT 1) AS one {_OPEN_RUN_LATERAL}"
    # The probe's parameters come first (select list), the run's after (FROM).
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, organization_id])
        row = cursor.fetchone()
    run, changed = _open_run_from_row(row)
    return run, changed, bool(row[-1])


# --- hot lookups -----------------------------------------------------------------------------

_READ_COLUMNS = "r.id, r.scim_id, r.document, r.version, r.created_at, r.updated_at"
# A group's live members' ids in membership order, in the same statement as the group.
_MEMBERS_COLUMN = (
    f"ARRAY(SELECT u.scim_id::text FROM {_MEMBERSHIP_TABLE} m JOIN {_TABLE} u "
    "ON u.id = m.user_record_id WHERE m.group_record_id = r.id AND u.deleted_at IS NULL "
    "ORDER BY m.user_record_id)"
)
# Columns a hot lookup may compare; values are the SQL for the comparison.
_LOOKUP_COLUMNS = {
    "scim_id": "r.scim_id = %s",
    "user_name_key": "r.user_name_key = %s",
    "external_id": "r.external_id = %s",
    # What Django's iexact compiles to on PostgreSQL.
    "display_name_iexact": "UPPER(r.display_name::text) = UPPER(%s)",
}
# The same comparisons as ORM lookups (SQLite).
_ORM_LOOKUPS = {
    "scim_id": "scim_id",
    "user_name_key": "user_name_key",
    "external_id": "external_id",
    "display_name_iexact": "display_name__iexact",
}


class RecordRow:
    """The columns a SCIM answer needs (same attribute names as ``DirectoryRecord``)."""

    __slots__ = ("pk", "scim_id", "document", "version", "created_at", "updated_at", "members")

    def __init__(self, row: tuple, with_members: bool):
        self.pk, self.scim_id, self.document, self.version, self.created_at, self.updated_at = row[
            :6
        ]
        # Django's PostgreSQL backend hands jsonb over as text (its JSONField parses it).
        if isinstance(self.document, str):
            self.document = json.loads(self.document)
        self.members = row[6] if with_members else None


def records_lookup(
    *,
    organization_id: int,
    resource_type: str,
    column: str,
    value,
    limit: int,
    with_members: bool = False,
) -> list[RecordRow]:
    """Live records of one organization and type whose ``column`` equals ``value``, by pk."""
    rows, _run, _changed = records_lookup_with_open_run(
        organization_id=organization_id,
        resource_type=resource_type,
        column=column,
        value=value,
        limit=limit,
        with_members=with_members,
        open_run=False,
    )
    return rows


def records_lookup_with_open_run(
    *,
    organization_id: int,
    resource_type: str,
    column: str,
    value,
    limit: int,
    with_members: bool = False,
    open_run: bool = True,
) -> tuple[list[RecordRow], ProvisioningRun | None, bool]:
    """``records_lookup`` plus, in the same statement, the organization's open provisioning
    run and whether a change was recorded in it."""
    if limit <= 0:
        return [], None, False
    if not is_postgres():
        rows = _records_lookup_orm(
            organization_id=organization_id,
            resource_type=resource_type,
            column=column,
            value=value,
            limit=limit,
            with_members=with_members,
        )
        if not open_run:
            return rows, None, False
        run, changed = _open_run_orm(organization_id=organization_id)
        return rows, run, changed
    columns = _READ_COLUMNS + (f", {_MEMBERS_COLUMN} AS members" if with_members else "")
    records = (
        f"SELECT {columns} FROM {_TABLE} r WHERE r.organization_id = %s "
        f"AND r.resource_type = %s AND r.deleted_at IS NULL AND {_LOOKUP_COLUMNS[column]} "
        "ORDER BY r.id LIMIT %s"
    )
    params = [organization_id, resource_type, value, limit]
    if not open_run:
        with prepared_cursor() as cursor:
            cursor.execute(records, params)
            return [RecordRow(row, with_members) for row in cursor.fetchall()], None, False
    sql = (
        f"SELECT {_OPEN_RUN_COLUMNS}, rr.* FROM (SELECT 1) AS one {_OPEN_RUN_LATERAL} "
        f"LEFT JOIN LATERAL ({records}) rr ON TRUE ORDER BY rr.id"
    )
    with prepared_cursor() as cursor:
        cursor.execute(sql, [organization_id, *params])
        fetched = cursor.fetchall()
    split = _OPEN_RUN_COLUMN_COUNT
    run, changed = _open_run_from_row(fetched[0])
    rows = [RecordRow(row[split:], with_members) for row in fetched if row[split] is not None]
    return rows, run, changed


def _records_lookup_orm(
    *, organization_id: int, resource_type: str, column: str, value, limit: int, with_members: bool
) -> list[RecordRow]:
    """``records_lookup`` on SQLite (same rows, same order)."""
    found = list(
        DirectoryRecord.objects.filter(
            organization_id=organization_id,
            resource_type=resource_type,
            deleted_at__isnull=True,
            **{_ORM_LOOKUPS[column]: value},
        )
        .order_by("pk")
        .values_list("id", "scim_id", "document", "version", "created_at", "updated_at")[:limit]
    )
    if not with_members:
        return [RecordRow(row, False) for row in found]
    members = group_members(group_ids=[row[0] for row in found])
    return [
        RecordRow((*row, [scim_id for scim_id, _label in members.get(row[0], [])]), True)
        for row in found
    ]
