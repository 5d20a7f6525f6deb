"""The directory record statements: insert, lock and update a record with the outbox event
each appends, a group's membership rows, and the engine's row locks.

A write's statements are assembled here and nowhere else. On PostgreSQL the event is
appended by the record's INSERT/UPDATE itself (a data-modifying CTE whose event row exists
only when the record row was written), and a SCIM write whose run is not known yet reads the
organization's open run in its first statement (``EventSpec.open_run_of``); the hot
statements run through the prepared cursor. SQLite (the embedded default) has no such CTE:
its fallback, beside each statement, appends the event with an INSERT of its own.

Row locks: a write locks its record ``FOR NO KEY UPDATE`` (no write changes a record's id or
scim_id): unlike ``FOR UPDATE`` it lets the ``FOR KEY SHARE`` that foreign-key checks take go
through (``directory_sync.records`` says why that matters). SQLite has no row locks.

These functions neither decide nor wake: the services in ``directory_sync.records`` decide
what to write and register the apply job's wake-up when an event was written.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from ..models import ChangeEvent, DirectoryMembership, DirectoryRecord, ProvisioningRun
from .db import has_row_locks, is_postgres, prepared_cursor
from .reads import OPEN_RUN_SELECT, run_columns, run_from_values

USER = DirectoryRecord.ResourceType.USER

_RECORDS = DirectoryRecord._meta.db_table
_LINKS = DirectoryMembership._meta.db_table
_EVENTS = ChangeEvent._meta.db_table
_FIELDS = [f for f in DirectoryRecord._meta.concrete_fields]
_COLUMNS = ", ".join(f'"{f.column}"' for f in _FIELDS)
_R_COLUMNS = ", ".join(f'r."{f.column}"' for f in _FIELDS)
_INSERT_FIELDS = [f for f in _FIELDS if not f.primary_key]


@dataclass(frozen=True)
class EventSpec:
    """The outbox event a write appends. ``open_run_of``: an organization id whose open run
    the statement reads and appends the event to (PostgreSQL; ``run_id`` is ignored then)."""

    kind: str
    run_id: int | None
    request_id: str
    open_run_of: int | None = None


@dataclass(frozen=True)
class Written:
    """What a write statement did: the record's id and the event's (None: nothing written),
    and, when it read the open run (``EventSpec.open_run_of``), that run (None: none open)."""

    record_id: int | None
    event_id: int | None
    run_read: bool = False
    run: ProvisioningRun | None = None


def events_fused() -> bool:
    """Whether a record statement also appends its event (PostgreSQL), so that one statement
    can do a whole write (``member_change_with_event``)."""
    return is_postgres()


# --- the outbox event ------------------------------------------------------------------------


def event_label(record: DirectoryRecord) -> str:
    return (record.user_name or record.display_name or "")[:255]


def event_insert(
    *, record: DirectoryRecord, kind: str, run_id: int | None, request_id: str = ""
) -> ChangeEvent:
    """Append an event for ``record`` at its current version, in a statement of its own."""
    return ChangeEvent.objects.create(
        organization_id=record.organization_id,
        record=record,
        run_id=run_id,
        resource_type=record.resource_type,
        scim_id=record.scim_id,
        label=event_label(record),
        kind=kind,
        record_version=record.version,
        request_id=request_id,
    )


_EVENT_COLUMNS = (
    "organization_id",
    "record_id",
    "run_id",
    "resource_type",
    "scim_id",
    "label",
    "kind",
    "record_version",
    "status",
    "outcome",
    "reason",
    "attempts",
    "request_id",
    "created_at",
)


def _event_insert_sql(
    *, source: str, record: DirectoryRecord, event: EventSpec, run_id_sql: str = ""
) -> tuple[str, list]:
    """``INSERT INTO <events> ... SELECT ... FROM <source> RETURNING id`` and its parameters:
    the row ``event_insert`` would write for ``record``, written by the same statement as the
    record (``source`` returns the record's ``id``; no row from ``source``, no event).
    ``run_id_sql``: an SQL expression for the run (instead of ``event.run_id``)."""
    values = ", ".join(["%s"] * (len(_EVENT_COLUMNS) - 3))
    sql = (
        f"INSERT INTO {_EVENTS} ({', '.join(_EVENT_COLUMNS)}) "
        f"SELECT %s, {source}.id, {run_id_sql or '%s'}, {values} FROM {source} RETURNING id"
    )
    params = [
        record.organization_id,
        *([] if run_id_sql else [event.run_id]),
        record.resource_type,
        record.scim_id,
        event_label(record),
        event.kind,
        record.version,
        ChangeEvent.Status.PENDING,
        "",
        "",
        0,
        event.request_id,
        timezone.now(),
    ]
    return sql, params


def _execute_with_event(
    sql: str,
    params: list,
    *,
    record: DirectoryRecord,
    event: EventSpec,
    before: tuple[str, list] = ("", []),
) -> Written:
    """Run ``sql`` (an INSERT or UPDATE of ``record`` returning its ``id``, or nothing) and,
    in the same statement, append ``event`` when it returned a row (PostgreSQL). ``before``:
    a CTE ``sql`` may read, and its parameters."""
    run_cte, run_params, run_id_sql = "", [], ""
    select = "SELECT written.id, event.id FROM written, event"
    if event.open_run_of is not None:
        # The write's run is not known yet: read the open run here and append to it.
        run_cte, run_params = f"open_run AS ({OPEN_RUN_SELECT}), ", [event.open_run_of]
        run_id_sql = "(SELECT id FROM open_run)"
        select = (
            f"SELECT written.id, event.id, {run_columns('open_run')} FROM (SELECT 1) AS one "
            "LEFT JOIN written ON TRUE LEFT JOIN event ON TRUE LEFT JOIN open_run ON TRUE"
        )
    event_sql, event_params = _event_insert_sql(
        source="written", record=record, event=event, run_id_sql=run_id_sql
    )
    before_cte = f"{before[0]}, " if before[0] else ""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"WITH {before_cte}{run_cte}written AS ({sql}), event AS ({event_sql}) {select}",
            [*before[1], *run_params, *params, *event_params],
        )
        row = cursor.fetchone()
    run_read = bool(run_id_sql)
    run = run_from_values(row[2:]) if run_read else None
    if row is None or row[0] is None:
        return Written(None, None, run_read, run)
    return Written(row[0], row[1], run_read, run)


# --- values ----------------------------------------------------------------------------------

_converters_cache: dict[str, list] = {}


def _converters() -> list:
    """Per column, the backend's and the field's from-database converters (what the ORM's
    compiler applies): UUIDs and datetimes on SQLite, JSON everywhere."""
    found = _converters_cache.get(connection.vendor)
    if found is None:
        found = []
        for field in _FIELDS:
            column = field.get_col(_RECORDS)
            found.append(
                (
                    column,
                    connection.ops.get_db_converters(column) + field.get_db_converters(connection),
                )
            )
        _converters_cache[connection.vendor] = found
    return found


def _record_from_row(row: Sequence) -> DirectoryRecord:
    values = []
    for value, (column, converters) in zip(row, _converters(), strict=True):
        for converter in converters:
            value = converter(value, column, connection)
        values.append(value)
    return DirectoryRecord.from_db(connection.alias, None, values)


def _prep(record: DirectoryRecord, field) -> object:
    return field.get_db_prep_save(getattr(record, field.attname), connection)


def _uuid_params(ids: Sequence[str]) -> list:
    field = DirectoryRecord._meta.get_field("scim_id")
    return [field.get_db_prep_value(uuid.UUID(i), connection) for i in ids]


def _for_update() -> str:
    # NO KEY UPDATE: a write never changes a record's key (module docstring).
    return " FOR NO KEY UPDATE" if has_row_locks() else ""


# --- records ---------------------------------------------------------------------------------


def record_insert(record: DirectoryRecord, *, event: EventSpec | None = None) -> Written:
    """INSERT the record unless it breaks a unique constraint (``ON CONFLICT DO NOTHING``,
    which also waits for a concurrent insert of the same value to commit or roll back); sets
    its pk. One statement, which on PostgreSQL also appends ``event`` (only when the record
    was inserted)."""
    names = ", ".join(f'"{f.column}"' for f in _INSERT_FIELDS)
    marks = ", ".join(["%s"] * len(_INSERT_FIELDS))
    sql = (
        f'INSERT INTO "{_RECORDS}" ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING RETURNING "id"'
    )
    params = [_prep(record, f) for f in _INSERT_FIELDS]
    if event is not None and is_postgres():
        written = _execute_with_event(sql, params, record=record, event=event)
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        written = Written(None if row is None else row[0], None)
        if written.record_id is not None and event is not None:
            record.pk = written.record_id
            appended = event_insert(
                record=record, kind=event.kind, run_id=event.run_id, request_id=event.request_id
            )
            written = Written(written.record_id, appended.pk)
    if written.record_id is not None:
        record.pk = written.record_id
        record._state.adding = False
        record._state.db = connection.alias
    return written


def record_lock(
    *, organization_id: int, resource_type: str, key: uuid.UUID, open_run_of: int | None = None
) -> tuple[DirectoryRecord | None, Written | None]:
    """Lock and read a live record. With ``open_run_of`` (PostgreSQL), the same statement
    reads that organization's open run: ``Written(run_read=True, run=...)`` beside the record
    (None when there is no such record)."""
    where = [organization_id, resource_type, *_uuid_params([str(key)])]
    if open_run_of is not None:
        with prepared_cursor() as cursor:
            cursor.execute(
                f'SELECT {_R_COLUMNS}, {run_columns("open_run")} FROM "{_RECORDS}" r '
                f"LEFT JOIN LATERAL ({OPEN_RUN_SELECT}) open_run ON TRUE "
                'WHERE r."organization_id" = %s AND r."resource_type" = %s AND '
                'r."deleted_at" IS NULL AND r."scim_id" = %s FOR NO KEY UPDATE OF r',
                [open_run_of, *where],
            )
            row = cursor.fetchone()
        if row is None:
            return None, None
        run = Written(None, None, True, run_from_values(row[len(_FIELDS) :]))
        return _record_from_row(row[: len(_FIELDS)]), run
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT {_COLUMNS} FROM "{_RECORDS}" WHERE "organization_id" = %s AND '
            '"resource_type" = %s AND "deleted_at" IS NULL AND "scim_id" = %s' + _for_update(),
            where,
        )
        row = cursor.fetchone()
    return (None if row is None else _record_from_row(row)), None


def record_update(
    record: DirectoryRecord, names: Sequence[str], *, event: EventSpec | None = None
) -> Written:
    """UPDATE these columns of the record; with ``event``, append it (one statement on
    PostgreSQL)."""
    fields = [DirectoryRecord._meta.get_field(name) for name in names]
    assignments = ", ".join(f'"{f.column}" = %s' for f in fields)
    sql = f'UPDATE "{_RECORDS}" SET {assignments} WHERE "id" = %s'
    params = [_prep(record, f) for f in fields] + [record.pk]
    if event is not None and is_postgres():
        return _execute_with_event(sql + ' RETURNING "id"', params, record=record, event=event)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    if event is None:
        return Written(record.pk, None)
    appended = event_insert(
        record=record, kind=event.kind, run_id=event.run_id, request_id=event.request_id
    )
    return Written(record.pk, appended.pk)


def records_lock_for_share(record_ids: list[int]) -> None:
    """``FOR SHARE`` on these records, in id order (the engine's lock order)."""
    if not record_ids or not has_row_locks():
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {_RECORDS} WHERE id = ANY(%s) ORDER BY id FOR SHARE",
            [sorted(record_ids)],
        )


# --- a group's members -----------------------------------------------------------------------
# ``ids`` below ``members_resolve``: user SCIM ids, sorted, distinct, canonical
# (``str(uuid.UUID(i))``) and not empty.


def members_resolve(*, organization_id: int, ids: Sequence[str]) -> dict[str, int]:
    """Map user SCIM ids (any spelling of a UUID) to record pks (live users of this
    organization only)."""
    wanted = sorted({str(uuid.UUID(i)) for i in ids})
    if not wanted:
        return {}
    found = {}
    marks = ", ".join(["%s"] * len(wanted))
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT "id", "scim_id" FROM "{_RECORDS}" WHERE "organization_id" = %s AND '
            f'"resource_type" = %s AND "deleted_at" IS NULL AND "scim_id" IN ({marks})',
            [organization_id, USER, *_uuid_params(wanted)],
        )
        for pk, scim_id in cursor.fetchall():
            found[str(uuid.UUID(scim_id) if isinstance(scim_id, str) else scim_id)] = pk
    return found


def _live_users_sql(organization_id: int, ids: Sequence[str]) -> tuple[str, list]:
    marks = ", ".join(["%s"] * len(ids))
    sql = (
        f'SELECT "id" FROM "{_RECORDS}" WHERE "organization_id" = %s AND "resource_type" = %s '
        f'AND "deleted_at" IS NULL AND "scim_id" IN ({marks})'
    )
    return sql, [organization_id, USER, *_uuid_params(ids)]


def _links_add_sql(group: DirectoryRecord, ids: Sequence[str], *, checked: bool) -> tuple:
    """INSERT the links of ``ids`` to ``group``; unless ``checked``, only when every id is a
    live user of the organization (else nothing)."""
    users, params = _live_users_sql(group.organization_id, ids)
    guard = ""
    guard_params: list = []
    if not checked:
        guard = f" AND (SELECT COUNT(*) FROM ({users}) AS wanted) = %s"
        guard_params = [*params, len(ids)]
    now = DirectoryMembership._meta.get_field("created_at").get_db_prep_save(
        timezone.now(), connection
    )
    sql = (
        f'INSERT INTO "{_LINKS}" ("group_record_id", "user_record_id", "created_at") '
        f'SELECT %s, "id", %s FROM "{_RECORDS}" WHERE "organization_id" = %s AND '
        f'"resource_type" = %s AND "deleted_at" IS NULL AND "scim_id" IN '
        f"({', '.join(['%s'] * len(ids))}){guard} ON CONFLICT DO NOTHING"
    )
    return sql, [group.pk, now, *params, *guard_params]


def links_add(group: DirectoryRecord, ids: Sequence[str], *, checked: bool) -> int:
    """Add these users to the group in one statement; how many links were new (unless
    ``checked``, 0 as well when some id is not a live user: nothing written then)."""
    sql, params = _links_add_sql(group, ids, checked=checked)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def links_remove(group: DirectoryRecord, ids: Sequence[str] | None, *, keep: bool) -> int:
    """Remove these users' links (``keep``: every link except theirs; ``ids`` None: every
    link). One statement; how many were removed."""
    if ids is None or (keep and not ids):
        sql, params = f'DELETE FROM "{_LINKS}" WHERE "group_record_id" = %s', [group.pk]
    else:
        users, user_params = _live_users_sql(group.organization_id, ids)
        sql = (
            f'DELETE FROM "{_LINKS}" WHERE "group_record_id" = %s AND "user_record_id" '
            f"{'NOT IN' if keep else 'IN'} ({users})"
        )
        params = [group.pk, *user_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def member_change_with_event(
    group: DirectoryRecord, op: str, ids: Sequence[str], event: EventSpec
) -> Written:
    """Add (``op`` "add", only when every id is a live user) or remove some users, bump the
    group's version and append ``event`` — one statement (PostgreSQL only). The group's
    ``version``/``updated_at`` are those to write; nothing is written when no link changed."""
    if op == "add":
        links_sql, links_params = _links_add_sql(group, ids, checked=False)
    else:
        users, user_params = _live_users_sql(group.organization_id, ids)
        links_sql = (
            f'DELETE FROM "{_LINKS}" WHERE "group_record_id" = %s AND "user_record_id" IN ({users})'
        )
        links_params = [group.pk, *user_params]
    fields = [DirectoryRecord._meta.get_field(name) for name in ("version", "updated_at")]
    return _execute_with_event(
        f'UPDATE "{_RECORDS}" SET "version" = %s, "updated_at" = %s WHERE "id" = %s '
        'AND EXISTS (SELECT 1 FROM links) RETURNING "id"',
        [*(_prep(group, f) for f in fields), group.pk],
        record=group,
        event=event,
        before=(f"links AS ({links_sql} RETURNING 1)", links_params),
    )
