"""Reads of directory records for SCIM answers, always scoped to one organization.

Tombstoned records (``deleted_at`` set) are invisible here. Lists are ordered by primary key
so ``startIndex`` pagination is stable, and counted/sliced in the database.
"""

import json
import uuid
from collections import defaultdict

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.postgresql.base import CursorDebugWrapper as PostgresDebugWrapper
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.backends.utils import CursorWrapper
from django.db.models import Q, QuerySet

from members.models import Organization

from .. import runs
from ..models import DirectoryMembership, DirectoryRecord, ProvisioningRun


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
    try:
        key = uuid.UUID(str(scim_id))
    except ValueError:
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


# --- hot reads: one hand-written indexed statement each ----------------------------------------
# Entra's per-cycle lookups (userName/externalId eq, GET by id, the probe) are most of its
# traffic. Compiling an ORM query costs more CPU than PostgreSQL spends answering it (bench
# profile), so these reads use fixed SQL and return plain rows that ``documents.*_resource``
# render without building model instances.

_TABLE = DirectoryRecord._meta.db_table
_MEMBERSHIP_TABLE = DirectoryMembership._meta.db_table
_READ_COLUMNS = "r.id, r.scim_id, r.document, r.version, r.created_at, r.updated_at"
# A group's live members' ids in membership order, in the same statement as the group.
_MEMBERS_COLUMN = (
    f"ARRAY(SELECT u.scim_id::text FROM {_MEMBERSHIP_TABLE} m JOIN {_TABLE} u "
    "ON u.id = m.user_record_id WHERE m.group_record_id = r.id AND u.deleted_at IS NULL "
    "ORDER BY m.user_record_id)"
)
# Columns a hot lookup may compare; values are the SQL for the comparison.
LOOKUP_COLUMNS = {
    "scim_id": "r.scim_id = %s",
    "user_name_key": "r.user_name_key = %s",
    "external_id": "r.external_id = %s",
    # What Django's iexact compiles to on PostgreSQL.
    "display_name_iexact": "UPPER(r.display_name::text) = UPPER(%s)",
}


class _PreparingCursor(ServerBindingCursor):
    """Binds on the server and prepares each statement it runs (named, once per connection).

    The connection keeps Django's ``prepare_threshold`` of None (preparing off) between these
    calls: with a threshold set, psycopg keeps books on every other query of the connection
    too (~10 µs each, and a ``DEALLOCATE ALL`` after any rollback).
    """

    def execute(self, query, params=None, **kwargs):
        raw = self.connection
        previous = raw.prepare_threshold
        if previous is None:
            raw.prepare_threshold = 0
        try:
            return super().execute(query, params, prepare=True, **kwargs)
        finally:
            raw.prepare_threshold = previous


def prepared_cursor():
    """A cursor whose statements PostgreSQL parses and plans once per connection.

    Django binds parameters on the client and so never prepares: PostgreSQL parsed and planned
    each hot lookup afresh, about 0.6 ms of its CPU against 0.1 ms to execute it (bench). Only
    for fixed hand-written statements (each distinct text is prepared and kept); opened like
    ``connection.cursor()`` (health check, thread check, query logging, ``execute_wrapper``).
    ``BEEM_PREPARED_STATEMENTS`` off (``DATABASE_PREPARED_STATEMENTS=false``): Django's cursor.
    """
    wrapper = connections[DEFAULT_DB_ALIAS]  # once: each django.db.connection.x looks it up
    if not settings.BEEM_PREPARED_STATEMENTS:
        return wrapper.cursor()
    wrapper.close_if_health_check_failed()
    wrapper.ensure_connection()
    wrapper.validate_thread_sharing()
    cursor = _PreparingCursor(wrapper.connection)
    if wrapper.queries_logged:
        return _PreparedDebugWrapper(cursor, wrapper)
    return wrapper.make_cursor(cursor)


class _PreparedDebugWrapper(PostgresDebugWrapper):
    """Logs (DEBUG, tests) the statement with its values, as Django does when it binds on the
    server: psycopg keeps no query text to read back after a prepared execution."""

    def execute(self, sql, params=None):
        try:
            logged = self.db.ops.compose_sql(sql, params)
        except Exception:  # a value psycopg cannot quote: log the template
            logged = sql
        with self.debug_sql(logged, params):
            return CursorWrapper.execute(self, sql, params)


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
    run and whether a change was recorded in it (``runs.OPEN_RUN_COLUMNS``)."""
    if limit <= 0:
        return [], None, False
    if connection.vendor != "postgresql":
        # The embedded default (SQLite) has no LATERAL, ARRAY() or ::casts: the same answer
        # through the ORM, in a few statements.
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
        run, changed = runs.open_run_orm(organization_id=organization_id)
        return rows, run, changed
    columns = _READ_COLUMNS + (f", {_MEMBERS_COLUMN} AS members" if with_members else "")
    records = (
        f"SELECT {columns} FROM {_TABLE} r WHERE r.organization_id = %s "
        f"AND r.resource_type = %s AND r.deleted_at IS NULL AND {LOOKUP_COLUMNS[column]} "
        "ORDER BY r.id LIMIT %s"
    )
    params = [organization_id, resource_type, value, limit]
    if not open_run:
        with prepared_cursor() as cursor:
            cursor.execute(records, params)
            return [RecordRow(row, with_members) for row in cursor.fetchall()], None, False
    sql = (
        f"SELECT {runs.OPEN_RUN_COLUMNS}, rr.* FROM (SELECT 1) AS one {runs.OPEN_RUN_LATERAL} "
        f"LEFT JOIN LATERAL ({records}) rr ON TRUE ORDER BY rr.id"
    )
    with prepared_cursor() as cursor:
        cursor.execute(sql, [organization_id, *params])
        fetched = cursor.fetchall()
    split = runs.OPEN_RUN_COLUMN_COUNT
    run, changed = runs.open_run_from_row(fetched[0])
    rows = [RecordRow(row[split:], with_members) for row in fetched if row[split] is not None]
    return rows, run, changed


_ORM_LOOKUPS = {
    "scim_id": "scim_id",
    "user_name_key": "user_name_key",
    "external_id": "external_id",
    "display_name_iexact": "display_name__iexact",
}


def _records_lookup_orm(
    *, organization_id: int, resource_type: str, column: str, value, limit: int, with_members: bool
) -> list[RecordRow]:
    """``records_lookup`` for databases other than PostgreSQL (same rows, same order)."""
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


def scim_uuid(value) -> uuid.UUID | None:
    """``value`` as a UUID, or None: a SCIM id that is not a UUID cannot be one of ours."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
