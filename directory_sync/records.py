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
caller's transaction stays usable. The statements are ``store.records``'s: a create is one
INSERT, an update one locked SELECT and one UPDATE, a member add or remove one statement, each
appending its event itself on PostgreSQL; a SCIM write's run (``runs.WriteRun``) is read by
its first statement.

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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from members.models import Organization

from .models import ChangeEvent, DirectoryRecord, ProvisioningRun
from .outbox import wake_after_commit
from .runs import WriteRun
from .store import records as store_records
from .store.records import EventSpec, Written

USER = DirectoryRecord.ResourceType.USER
GROUP = DirectoryRecord.ResourceType.GROUP

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


class VersionMismatch(ValueError):
    """The record's ``version`` is none of those the writer expected (SCIM ``If-Match``)."""

    def __init__(self, version: int):
        super().__init__(f"The record is at version {version}.")
        self.version = version


def _check_version(record: DirectoryRecord, expected_versions: Collection[int] | None) -> None:
    if expected_versions is not None and record.version not in expected_versions:
        raise VersionMismatch(record.version)


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

    def spec(self) -> EventSpec:
        """A ``WriteRun`` that has not read its run yet has the write's statement read it."""
        pending = self.run if isinstance(self.run, WriteRun) else None
        known = pending.run if pending is not None else self.run
        return EventSpec(
            kind=self.kind,
            run_id=known.pk if known is not None else None,
            request_id=self.request_id,
            open_run_of=(
                pending.organization_id if pending is not None and not pending.read else None
            ),
        )


def _written(written: Written, *, record: DirectoryRecord, event: _Event) -> int | None:
    """After a write statement: the ``WriteRun`` learns the run the statement read and the
    event it appended; the apply job is woken after commit. The event's id, or None."""
    pending = event.run if isinstance(event.run, WriteRun) else None
    if written.run_read:
        pending.found(written.run)
    if written.event_id is None:
        return None
    if pending is not None:
        pending.event_ids.append(written.event_id)
    wake_after_commit(organization_id=record.organization_id)
    return written.event_id


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


def _insert(record: DirectoryRecord, *, event: _Event) -> bool:
    """INSERT the record and append ``event`` unless it breaks a unique constraint."""
    written = store_records.record_insert(record, event=event.spec())
    _written(written, record=record, event=event)
    return written.record_id is not None


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
    pending = run if isinstance(run, WriteRun) and not run.read else None
    record, read = store_records.record_lock(
        organization_id=organization.pk,
        resource_type=resource_type,
        key=key,
        open_run_of=pending.organization_id if pending is not None else None,
    )
    if read is not None:
        pending.found(read.run)
    return record


def _update(record: DirectoryRecord, names: Sequence[str], *, event: _Event) -> int | None:
    """UPDATE these columns of the record and append ``event``; the event's id."""
    written = store_records.record_update(record, names, event=event.spec())
    return _written(written, record=record, event=event)


# --- members ---------------------------------------------------------------------------------


def _canonical(ids: Sequence[str]) -> list[str]:
    return sorted({str(uuid.UUID(i)) for i in ids})


def _links_add(group: DirectoryRecord, ids: Sequence[str], *, checked: bool) -> int | None:
    """Add these users to the group; how many links were new, or None when some id is not a
    live user of the organization (nothing written then). One statement when ``checked`` is
    False: the insert only happens when every id resolves."""
    ids = _canonical(ids)
    if not ids:
        return 0
    inserted = store_records.links_add(group, ids, checked=checked)
    if inserted or checked:
        return inserted
    return _nothing_added(group, ids)


def _nothing_added(group: DirectoryRecord, ids: Sequence[str]) -> int | None:
    """After an unchecked add inserted nothing: 0 when every id is already a member, None
    when some id is not a live user (nothing was written)."""
    found = store_records.members_resolve(organization_id=group.organization_id, ids=ids)
    return 0 if len(found) == len(ids) else None


def _member_change_with_event(
    group: DirectoryRecord, change: MemberChange, event: _Event
) -> int | None:
    """Entra's usual group PATCH — add or remove some users — with the version bump and the
    event in one statement (PostgreSQL); the event's id, None when nothing changed. Raises
    UnknownMembers (nothing written) when an added id is not a live user."""
    ids = _canonical(change.ids)
    if not ids:
        return None
    version, updated_at = group.version, group.updated_at
    group.version += 1
    group.updated_at = timezone.now()
    written = store_records.member_change_with_event(group, change.op, ids, event.spec())
    event_id = _written(written, record=group, event=event)
    if event_id is not None:
        return event_id
    group.version, group.updated_at = version, updated_at
    if change.op == "add" and _nothing_added(group, ids) is None:
        found = store_records.members_resolve(organization_id=group.organization_id, ids=ids)
        raise UnknownMembers(sorted(set(ids) - set(found)))
    return None


def _links_remove(group: DirectoryRecord, ids: Sequence[str] | None, *, keep: bool) -> int:
    """Remove these users' links (``keep``: remove every link except theirs). One statement."""
    if ids is not None and not (keep and not ids):
        ids = _canonical(ids)
        if not ids:
            return 0
    return store_records.links_remove(group, ids, keep=keep)


def _check_members(*, organization_id: int, changes: Sequence[MemberChange]) -> None:
    """Refuse (before any write) a change set whose add/replace ids are not all live users."""
    strict = sorted({str(uuid.UUID(i)) for c in changes if c.op != "remove" for i in c.ids})
    if not strict:
        return
    found = store_records.members_resolve(organization_id=organization_id, ids=strict)
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
            found = store_records.members_resolve(
                organization_id=group.organization_id, ids=changes[0].ids
            )
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
    expected_versions: Collection[int] | None = None,
) -> RecordWrite:
    """Change a record under its row lock.

    ``change(record)`` gets the locked record and returns ``(document, mirror)``: the new
    canonical document and its mirror columns (PATCH computes it from the current document, so
    concurrent PATCHes never lose each other's changes). It may raise to refuse the change;
    nothing is written then. ``member_changes`` apply to a group's members. The version is
    bumped and one event appended only when something changed: ``deactivated`` /
    ``reactivated`` when ``active`` flipped, ``updated`` when the document changed,
    ``members_changed`` when only a group's members did. ``expected_versions``: refuse with
    ``VersionMismatch`` (nothing written) unless the locked record is at one of them.
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
                _check_version(record, expected_versions)
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
        and store_records.events_fused()
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
    expected_versions: Collection[int] | None = None,
) -> DirectoryRecord:
    """Tombstone a record (invisible to SCIM from now on) and append a ``deleted`` event.

    The apply job converges the member/group to "gone" and then purges the tombstone; the
    tombstone frees the userName/externalId at once (the unique constraints skip it).
    ``expected_versions`` as for ``record_update``.
    """
    mismatch: VersionMismatch | None = None
    with transaction.atomic(savepoint=False):
        record = _lock(
            organization=organization, resource_type=resource_type, scim_id=scim_id, run=run
        )
        if record is not None:
            try:
                _check_version(record, expected_versions)
            except VersionMismatch as exc:
                # Raised after the block: raising inside would doom the caller's transaction.
                mismatch = exc
        if record is not None and mismatch is None:
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
    if mismatch is not None:
        raise mismatch
    return record
