"""Services that write directory records and their memberships — the SCIM write path.

Every write here runs in one transaction that changes the ``DirectoryRecord`` (or its
``DirectoryMembership`` rows), bumps ``version`` and appends a change event to the outbox
(``directory_sync.outbox.change_event_append``), which is dispatched to Celery after commit.
A write that changes nothing appends nothing. Uniqueness (userName case-insensitively and
externalId, per organization and resource type) is enforced by the partial unique
constraints: a create inserts with ``ON CONFLICT DO NOTHING`` (which also waits for a
concurrent insert of the same value to commit or roll back), and an update that changes
userName/externalId checks first and writes inside a savepoint, so a concurrent duplicate is
reported as ``RecordConflict`` either way.

These services run inside the SCIM request's transaction (``scim.views`` opens one per write
request so the request-log row shares its commit) or open their own. They never leave a
partial write behind: every refusal (conflict, unknown members, a change callback that
raises) is decided before the first write statement and raised after the block, so the
caller's transaction stays usable. The hot paths are a few hand-written SQL statements (bench
profile: the ORM cost more than the rest of a write): a create is one INSERT, an update one
locked SELECT and one UPDATE, a member add or remove one statement. On PostgreSQL the outbox
event is appended by the record's INSERT/UPDATE itself (a data-modifying CTE), and a SCIM
write's run (``runs.WriteRun``) is read by its first statement; the embedded SQLite default
appends the event with an INSERT of its own.

Row locks: a write locks its record ``FOR NO KEY UPDATE``, as the sync engine does (no write
changes a record's id or scim_id). Unlike ``FOR UPDATE`` it lets other transactions take
``FOR KEY SHARE``, the lock PostgreSQL's foreign-key checks take on the referenced row: a
group write whose new membership rows are checked (at COMMIT, the constraints are deferred)
against user records the engine holds would otherwise wait for the engine while holding the
group the engine asks for next, a deadlock. Deleting a record still takes ``FOR UPDATE``.

These services know documents, not SCIM requests: ``directory_sync.scim`` computes the new
document (from a POST body or by applying PATCH operations to the locked current document) and
translates the exceptions below into SCIM errors.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from members.models import Organization

from .models import ChangeEvent, DirectoryMembership, DirectoryRecord, ProvisioningRun
from .outbox import change_event_append, change_event_insert_sql, wake_after_commit
from .runs import WriteRun
from .store import reads
from .store.db import prepared_cursor

USER = DirectoryRecord.ResourceType.USER
GROUP = DirectoryRecord.ResourceType.GROUP

_RECORDS = DirectoryRecord._meta.db_table
_LINKS = DirectoryMembership._meta.db_table
_FIELDS = [f for f in DirectoryRecord._meta.concrete_fields]
_COLUMNS = ", ".join(f'"{f.column}"' for f in _FIELDS)
_R_COLUMNS = ", ".join(f'r."{f.column}"' for f in _FIELDS)
_INSERT_FIELDS = [f for f in _FIELDS if not f.primary_key]
_MIRROR = (
    "user_name",
    "user_name_key",
    "external_id",
    "display_name",
    "work_email",
    "manager_scim_id",
    "active",
)
_UNIQUE_MIRROR = ("user_name_key", "external_id")


class RecordNotFound(LookupError):
    """No live record with this id in this organization."""


class RecordConflict(ValueError):
    """Another live record of the organization already has this ``attribute`` value."""

    def __init__(self, attribute: str, value: str):
        super().__init__(f"{attribute} {value!r} is already used by another record.")
        self.attribute = attribute
        self.value = value


class UnknownMembers(ValueError):
    """Some member ids are not live users of the organization."""

    def __init__(self, ids: Sequence[str]):
        super().__init__(", ".join(ids))
        self.ids = list(ids)


@dataclass(frozen=True)
class MemberChange:
    """``add``, ``remove`` or ``replace`` group members, by user SCIM id, in request order."""

    op: str
    ids: tuple[str, ...]


@dataclass(frozen=True)
class RecordWrite:
    record: DirectoryRecord
    changed: bool
    event_id: int | None


@dataclass(frozen=True)
class _Event:
    """The outbox event a write appends: its kind, run and request."""

    kind: str
    run: ProvisioningRun | WriteRun | None
    request_id: str

    def known_run(self) -> ProvisioningRun | None:
        return self.run.run if isinstance(self.run, WriteRun) else self.run


def _statement_cursor():
    """The cursor of a write's hot statements (PostgreSQL): one PostgreSQL prepares once per
    connection (``store.db.prepared_cursor``), so it parses and plans each shape once."""
    return prepared_cursor()


def _fused() -> bool:
    """Whether the record statement also appends the event (a data-modifying CTE: PostgreSQL;
    the embedded SQLite default appends it with a statement of its own)."""
    return connection.vendor == "postgresql"


def _execute_with_event(
    sql: str,
    params: list,
    *,
    record: DirectoryRecord,
    event: _Event,
    before: tuple[str, list] = ("", []),
) -> tuple[int | None, int | None]:
    """Run ``sql`` (an INSERT or UPDATE of ``record`` returning its ``id``, or nothing) and,
    in the same statement, append ``event`` when it returned a row. ``(record id, event id)``,
    both None when nothing was written. ``before``: a CTE ``sql`` may read, and its
    parameters."""
    pending = event.run if isinstance(event.run, WriteRun) else None
    run_cte, run_params, run_id_sql = "", [], ""
    select = "SELECT written.id, event.id FROM written, event"
    if pending is not None and not pending.read:
        # The write's run is not known yet: read the open run here and append to it.
        run_cte, run_params = f"open_run AS ({reads.OPEN_RUN_SELECT}), ", [pending.organization_id]
        run_id_sql = "(SELECT id FROM open_run)"
        select = (
            f"SELECT written.id, event.id, {reads.run_columns('open_run')} FROM (SELECT 1) AS one "
            "LEFT JOIN written ON TRUE LEFT JOIN event ON TRUE LEFT JOIN open_run ON TRUE"
        )
    known = event.known_run()
    event_sql, event_params = change_event_insert_sql(
        source="written",
        record=record,
        kind=event.kind,
        run_id=known.pk if known is not None else None,
        request_id=event.request_id,
        run_id_sql=run_id_sql,
    )
    before_cte = f"{before[0]}, " if before[0] else ""
    with _statement_cursor() as cursor:
        cursor.execute(
            f"WITH {before_cte}{run_cte}written AS ({sql}), event AS ({event_sql}) {select}",
            [*before[1], *run_params, *params, *event_params],
        )
        row = cursor.fetchone()
    if run_id_sql:
        pending.found(reads.run_from_values(row[2:]))
    if row is None or row[0] is None:
        return None, None
    if pending is not None:
        pending.event_ids.append(row[1])
    wake_after_commit(organization_id=record.organization_id)
    return row[0], row[1]


# --- SQL helpers -----------------------------------------------------------------------------

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
    # NO KEY UPDATE: a write never changes a record's key, and this lock must not block the
    # FOR KEY SHARE that foreign-key checks take (module docstring). SQLite has no row locks.
    return " FOR NO KEY UPDATE" if connection.features.has_select_for_update else ""


def _conflict_of(
    *, organization_id: int, resource_type: str, mirror: dict, exclude_pk: int | None
) -> RecordConflict | None:
    """The uniqueness conflict ``mirror`` has with another live record, if any."""
    others = DirectoryRecord.objects.filter(
        organization_id=organization_id, resource_type=resource_type, deleted_at__isnull=True
    )
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    key = mirror.get("user_name_key")
    if key is not None and others.filter(user_name_key=key).exists():
        return RecordConflict("userName", mirror["user_name"])
    external_id = mirror.get("external_id")
    if external_id is not None and others.filter(external_id=external_id).exists():
        return RecordConflict("externalId", external_id)
    return None


def _insert(record: DirectoryRecord, *, event: _Event | None = None) -> bool:
    """INSERT the record unless it breaks a unique constraint; sets its pk. One statement,
    which on PostgreSQL also appends ``event`` (only when the record was inserted)."""
    names = ", ".join(f'"{f.column}"' for f in _INSERT_FIELDS)
    marks = ", ".join(["%s"] * len(_INSERT_FIELDS))
    sql = (
        f'INSERT INTO "{_RECORDS}" ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING RETURNING "id"'
    )
    params = [_prep(record, f) for f in _INSERT_FIELDS]
    if event is not None and _fused():
        pk, _event_id = _execute_with_event(sql, params, record=record, event=event)
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        pk = None if row is None else row[0]
        if pk is not None and event is not None:
            record.pk = pk
            change_event_append(
                record=record, kind=event.kind, run=event.known_run(), request_id=event.request_id
            )
    if pk is None:
        return False
    record.pk = pk
    record._state.adding = False
    record._state.db = connection.alias
    return True


def _lock(
    *,
    organization: Organization,
    resource_type: str,
    scim_id: str,
    run: ProvisioningRun | WriteRun | None = None,
) -> DirectoryRecord | None:
    """Lock and read a live record; a ``WriteRun`` learns the open run in the same statement."""
    try:
        key = uuid.UUID(str(scim_id))
    except ValueError:
        return None
    where = [organization.pk, resource_type, *_uuid_params([str(key)])]
    if isinstance(run, WriteRun) and not run.read:
        with _statement_cursor() as cursor:
            cursor.execute(
                f'SELECT {_R_COLUMNS}, {reads.run_columns("open_run")} FROM "{_RECORDS}" r '
                f"LEFT JOIN LATERAL ({reads.OPEN_RUN_SELECT}) open_run ON TRUE "
                'WHERE r."organization_id" = %s AND r."resource_type" = %s AND '
                'r."deleted_at" IS NULL AND r."scim_id" = %s FOR NO KEY UPDATE OF r',
                [run.organization_id, *where],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        run.found(reads.run_from_values(row[len(_FIELDS) :]))
        return _record_from_row(row[: len(_FIELDS)])
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT {_COLUMNS} FROM "{_RECORDS}" WHERE "organization_id" = %s AND '
            '"resource_type" = %s AND "deleted_at" IS NULL AND "scim_id" = %s' + _for_update(),
            where,
        )
        row = cursor.fetchone()
    return None if row is None else _record_from_row(row)


def _update(
    record: DirectoryRecord, names: Sequence[str], *, event: _Event | None = None
) -> int | None:
    """UPDATE these columns of the record; with ``event``, append it (one statement on
    PostgreSQL) and return its id."""
    fields = [DirectoryRecord._meta.get_field(name) for name in names]
    assignments = ", ".join(f'"{f.column}" = %s' for f in fields)
    sql = f'UPDATE "{_RECORDS}" SET {assignments} WHERE "id" = %s'
    params = [_prep(record, f) for f in fields] + [record.pk]
    if event is not None and _fused():
        return _execute_with_event(sql + ' RETURNING "id"', params, record=record, event=event)[1]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    if event is None:
        return None
    return change_event_append(
        record=record, kind=event.kind, run=event.known_run(), request_id=event.request_id
    ).pk


# --- members ---------------------------------------------------------------------------------


def _resolve_members(*, organization_id: int, ids: Sequence[str]) -> dict[str, int]:
    """Map user SCIM ids to record pks (live users of this organization only)."""
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


def _links_add(group: DirectoryRecord, ids: Sequence[str], *, checked: bool) -> int | None:
    """Add these users to the group; how many links were new, or None when some id is not a
    live user of the organization (nothing written then). One statement when ``checked`` is
    False: the insert only happens when every id resolves."""
    ids = sorted({str(uuid.UUID(i)) for i in ids})
    if not ids:
        return 0
    sql, params = _links_add_sql(group, ids, checked=checked)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.rowcount
    if inserted or checked:
        return inserted
    return _nothing_added(group, ids)


def _nothing_added(group: DirectoryRecord, ids: Sequence[str]) -> int | None:
    """After an unchecked add inserted nothing: 0 when every id is already a member, None
    when some id is not a live user (nothing was written)."""
    found = _resolve_members(organization_id=group.organization_id, ids=ids)
    return 0 if len(found) == len(ids) else None


def _links_add_sql(group: DirectoryRecord, ids: Sequence[str], *, checked: bool) -> tuple:
    """The INSERT of ``_links_add`` for sorted, distinct ``ids``."""
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


def _member_change_with_event(
    group: DirectoryRecord, change: MemberChange, event: _Event
) -> int | None:
    """Entra's usual group PATCH — add or remove some users — with the version bump and the
    event in one statement (PostgreSQL); the event's id, None when nothing changed. Raises
    UnknownMembers (nothing written) when an added id is not a live user."""
    ids = sorted({str(uuid.UUID(i)) for i in change.ids})
    if not ids:
        return None
    if change.op == "add":
        links_sql, links_params = _links_add_sql(group, ids, checked=False)
    else:
        users, user_params = _live_users_sql(group.organization_id, ids)
        links_sql = (
            f'DELETE FROM "{_LINKS}" WHERE "group_record_id" = %s AND "user_record_id" IN ({users})'
        )
        links_params = [group.pk, *user_params]
    version, updated_at = group.version, group.updated_at
    group.version += 1
    group.updated_at = timezone.now()
    fields = [DirectoryRecord._meta.get_field(name) for name in ("version", "updated_at")]
    _pk, event_id = _execute_with_event(
        f'UPDATE "{_RECORDS}" SET "version" = %s, "updated_at" = %s WHERE "id" = %s '
        'AND EXISTS (SELECT 1 FROM links) RETURNING "id"',
        [*(_prep(group, f) for f in fields), group.pk],
        record=group,
        event=event,
        before=(f"links AS ({links_sql} RETURNING 1)", links_params),
    )
    if event_id is not None:
        return event_id
    group.version, group.updated_at = version, updated_at
    if change.op == "add" and _nothing_added(group, ids) is None:
        found = _resolve_members(organization_id=group.organization_id, ids=ids)
        raise UnknownMembers(sorted(set(ids) - set(found)))
    return None


def _links_remove(group: DirectoryRecord, ids: Sequence[str] | None, *, keep: bool) -> int:
    """Remove these users' links (``keep``: remove every link except theirs). One statement."""
    if ids is None or (keep and not ids):
        sql, params = f'DELETE FROM "{_LINKS}" WHERE "group_record_id" = %s', [group.pk]
    else:
        ids = sorted({str(uuid.UUID(i)) for i in ids})
        if not ids:
            return 0
        users, user_params = _live_users_sql(group.organization_id, ids)
        sql = (
            f'DELETE FROM "{_LINKS}" WHERE "group_record_id" = %s AND "user_record_id" '
            f"{'NOT IN' if keep else 'IN'} ({users})"
        )
        params = [group.pk, *user_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _check_members(*, organization_id: int, changes: Sequence[MemberChange]) -> None:
    """Refuse (before any write) a change set whose add/replace ids are not all live users."""
    strict = sorted({str(uuid.UUID(i)) for c in changes if c.op != "remove" for i in c.ids})
    if not strict:
        return
    found = _resolve_members(organization_id=organization_id, ids=strict)
    missing = sorted(set(strict) - set(found))
    if missing:
        raise UnknownMembers(missing)


def _apply_member_changes(*, group: DirectoryRecord, changes: Sequence[MemberChange]) -> bool:
    """Apply member changes in order under the group's row lock; return whether any changed.

    Raises UnknownMembers before writing anything. A single add or remove (Entra's usual
    PATCH) is one statement; several changes are checked together first.
    """
    if len(changes) == 1 and changes[0].op == "add":
        added = _links_add(group, changes[0].ids, checked=False)
        if added is None:
            found = _resolve_members(organization_id=group.organization_id, ids=changes[0].ids)
            raise UnknownMembers(sorted({str(uuid.UUID(i)) for i in changes[0].ids} - set(found)))
        return bool(added)
    _check_members(organization_id=group.organization_id, changes=changes)
    changed = False
    for change in changes:
        if change.op == "remove":
            # Removing an id that is not a member (or not ours) changes nothing.
            changed |= bool(_links_remove(group, change.ids, keep=False))
            continue
        if change.op == "replace":
            changed |= bool(_links_remove(group, change.ids, keep=True))
        changed |= bool(_links_add(group, change.ids, checked=True))
    return changed


# --- services --------------------------------------------------------------------------------


def record_create(
    *,
    organization: Organization,
    resource_type: str,
    document: dict,
    mirror: dict,
    member_ids: Sequence[str] | None = None,
    run: ProvisioningRun | WriteRun | None = None,
    request_id: str = "",
) -> DirectoryRecord:
    """Create a record from a canonical document (and a group's members); event ``created``."""
    now = timezone.now()
    record = DirectoryRecord(
        organization=organization,
        resource_type=resource_type,
        document=document,
        created_at=now,
        updated_at=now,
        **mirror,
    )
    failure: Exception | None = None
    with transaction.atomic(savepoint=False):
        try:
            if member_ids:
                _check_members(
                    organization_id=organization.pk, changes=[MemberChange("add", member_ids)]
                )
        except UnknownMembers as exc:
            failure = exc
        else:
            event = _Event(ChangeEvent.Kind.CREATED, run, request_id)
            for _attempt in range(3):
                if _insert(record, event=event):
                    break
                # Nothing written: name the attribute another live record holds (a concurrent
                # insert of the same value has committed by now); if that record is already
                # gone again, try once more.
                failure = _conflict_of(
                    organization_id=organization.pk,
                    resource_type=resource_type,
                    mirror=mirror,
                    exclude_pk=None,
                )
                if failure is not None:
                    break
            else:
                raise IntegrityError("directory record insert kept conflicting")
            if failure is None and member_ids:
                _links_add(record, member_ids, checked=True)
    if failure is not None:
        raise failure
    return record


def record_get_for_update(
    *, organization: Organization, resource_type: str, scim_id: str
) -> DirectoryRecord:
    """Lock and return a live record (call inside a transaction)."""
    record = _lock(organization=organization, resource_type=resource_type, scim_id=scim_id)
    if record is None:
        raise RecordNotFound(scim_id)
    return record


def _event_kind(record: DirectoryRecord, *, was_active: bool, document_changed: bool) -> str:
    if record.resource_type == USER and was_active and not record.active:
        return ChangeEvent.Kind.DEACTIVATED
    if record.resource_type == USER and not was_active and record.active:
        return ChangeEvent.Kind.REACTIVATED
    if document_changed:
        return ChangeEvent.Kind.UPDATED
    return ChangeEvent.Kind.MEMBERS_CHANGED


def record_update(
    *,
    organization: Organization,
    resource_type: str,
    scim_id: str,
    change: Callable[[DirectoryRecord], tuple[dict, dict]] | None = None,
    member_changes: Sequence[MemberChange] = (),
    run: ProvisioningRun | WriteRun | None = None,
    request_id: str = "",
) -> RecordWrite:
    """Change a record under its row lock.

    ``change(record)`` gets the locked record and returns ``(document, mirror)``: the new
    canonical document and its mirror columns (PATCH computes it from the current document, so
    concurrent PATCHes never lose each other's changes). It may raise to refuse the change;
    nothing is written then. ``member_changes`` apply to a group's members. The version is
    bumped and one event appended only when something changed: ``deactivated`` /
    ``reactivated`` when ``active`` flipped, ``updated`` when the document changed,
    ``members_changed`` when only a group's members did.
    """
    failure: Exception | None = None
    result: RecordWrite | None = None
    with transaction.atomic(savepoint=False):
        record = _lock(
            organization=organization, resource_type=resource_type, scim_id=scim_id, run=run
        )
        if record is None:
            failure = RecordNotFound(scim_id)
        else:
            try:
                result = _record_change(
                    record,
                    change=change,
                    member_changes=member_changes,
                    run=run,
                    request_id=request_id,
                )
            except DatabaseError:
                raise
            except Exception as exc:  # a refusal: raised after the block
                failure = exc
    if failure is not None:
        raise failure
    return result


def _record_change(
    record: DirectoryRecord,
    *,
    change: Callable[[DirectoryRecord], tuple[dict, dict]] | None,
    member_changes: Sequence[MemberChange],
    run: ProvisioningRun | WriteRun | None,
    request_id: str,
) -> RecordWrite:
    """The body of record_update once the record is locked; raises only before writing (a
    unique-changing UPDATE is written inside a savepoint)."""
    was_active = record.active
    document_changed = False
    mirror: dict = {}
    unique_changed = False
    rest = {"member_changes": member_changes, "run": run, "request_id": request_id}
    if change is not None:
        document, mirror = change(record)
        current = {field: getattr(record, field) for field in mirror}
        if document != record.document or mirror != current:
            document_changed = True
            changed_mirror = {k: v for k, v in mirror.items() if v != current.get(k)}
            unique_changed = any(k in changed_mirror for k in _UNIQUE_MIRROR)
            if unique_changed:
                conflict = _conflict_of(
                    organization_id=record.organization_id,
                    resource_type=record.resource_type,
                    mirror=changed_mirror,
                    exclude_pk=record.pk,
                )
                if conflict is not None:
                    raise conflict
            record.document = document
            for field, value in mirror.items():
                setattr(record, field, value)
    if unique_changed:
        # Rare (Entra renames): write in a savepoint so a unique race undoes only this write.
        try:
            with transaction.atomic():
                event_id = _record_write(record, was_active, document_changed, mirror, **rest)
        except IntegrityError:
            conflict = _conflict_of(
                organization_id=record.organization_id,
                resource_type=record.resource_type,
                mirror=mirror,
                exclude_pk=record.pk,
            )
            if conflict is not None:
                raise conflict
            raise
    else:
        event_id = _record_write(record, was_active, document_changed, mirror, **rest)
    if event_id is None:
        return RecordWrite(record=record, changed=False, event_id=None)
    return RecordWrite(record=record, changed=True, event_id=event_id)


def _record_write(
    record: DirectoryRecord,
    was_active: bool,
    document_changed: bool,
    mirror: dict,
    *,
    member_changes: Sequence[MemberChange],
    run: ProvisioningRun | WriteRun | None,
    request_id: str,
) -> int | None:
    """Member changes (refused before any write), then the record UPDATE and its event (one
    statement on PostgreSQL); the event's id, None when nothing changed."""
    if (
        not document_changed
        and len(member_changes) == 1
        and member_changes[0].op in ("add", "remove")
        and _fused()
    ):
        kind = ChangeEvent.Kind.MEMBERS_CHANGED
        return _member_change_with_event(record, member_changes[0], _Event(kind, run, request_id))
    members_changed = (
        _apply_member_changes(group=record, changes=member_changes) if member_changes else False
    )
    if not document_changed and not members_changed:
        return None
    record.version += 1
    record.updated_at = timezone.now()
    fields = ["version", "updated_at"]
    if document_changed:
        fields += ["document", *mirror.keys()]
    kind = _event_kind(record, was_active=was_active, document_changed=document_changed)
    return _update(record, fields, event=_Event(kind, run, request_id))


def record_delete(
    *,
    organization: Organization,
    resource_type: str,
    scim_id: str,
    run: ProvisioningRun | WriteRun | None = None,
    request_id: str = "",
) -> DirectoryRecord:
    """Tombstone a record (invisible to SCIM from now on) and append a ``deleted`` event.

    The apply job converges the member/group to "gone" and then purges the tombstone; the
    tombstone frees the userName/externalId at once (the unique constraints skip it).
    """
    with transaction.atomic(savepoint=False):
        record = _lock(
            organization=organization, resource_type=resource_type, scim_id=scim_id, run=run
        )
        if record is not None:
            record.deleted_at = timezone.now()
            record.updated_at = record.deleted_at
            record.version += 1
            _update(
                record,
                ["deleted_at", "version", "updated_at"],
                event=_Event(ChangeEvent.Kind.DELETED, run, request_id),
            )
    if record is None:
        raise RecordNotFound(scim_id)
    return record
