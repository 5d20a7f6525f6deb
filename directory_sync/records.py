"""Services that write directory records and their memberships — the SCIM write path.

Every write here runs in one transaction that changes the ``DirectoryRecord`` (or its
``DirectoryMembership`` rows), bumps ``version`` and appends a change event to the outbox
(``directory_sync.outbox.change_event_append``), which is dispatched to Celery after commit.
A write that changes nothing appends nothing. Uniqueness (userName case-insensitively and
externalId, per organization and resource type) is checked before writing for a readable
answer, and enforced by the partial unique constraints: a concurrent duplicate insert fails
with IntegrityError inside a savepoint and is reported as ``RecordConflict``.

These services know documents, not SCIM requests: ``directory_sync.scim`` computes the new
document (from a POST body or by applying PATCH operations to the locked current document) and
translates the exceptions below into SCIM errors.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from members.models import Organization

from .models import ChangeEvent, DirectoryMembership, DirectoryRecord, ProvisioningRun
from .outbox import change_event_append

USER = DirectoryRecord.ResourceType.USER
GROUP = DirectoryRecord.ResourceType.GROUP


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
    event: ChangeEvent | None


def _live(organization: Organization, resource_type: str):
    return DirectoryRecord.objects.filter(
        organization=organization, resource_type=resource_type, deleted_at__isnull=True
    )


def _check_unique(
    *, organization: Organization, resource_type: str, mirror: dict, exclude_pk: int | None
) -> None:
    others = _live(organization, resource_type)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    key = mirror.get("user_name_key")
    if key is not None and others.filter(user_name_key=key).exists():
        raise RecordConflict("userName", mirror["user_name"])
    external_id = mirror.get("external_id")
    if external_id is not None and others.filter(external_id=external_id).exists():
        raise RecordConflict("externalId", external_id)


def _save_unique(
    record: DirectoryRecord, *, mirror: dict, create: bool, update_fields: list[str] | None
) -> None:
    """Insert/update inside a savepoint; a unique-constraint race becomes RecordConflict."""
    try:
        with transaction.atomic():
            if create:
                record.save(force_insert=True)
            else:
                record.save(update_fields=update_fields)
    except IntegrityError:
        # A concurrent writer committed the same userName/externalId between our check and our
        # write: re-check to name the attribute (it is visible now), else re-raise.
        _check_unique(
            organization=record.organization,
            resource_type=record.resource_type,
            mirror=mirror,
            exclude_pk=record.pk if not create else None,
        )
        raise


def _resolve_members(
    *, organization: Organization, ids: Sequence[str], strict: bool
) -> dict[str, int]:
    """Map user SCIM ids to record pks (live users of this organization only)."""
    wanted = {str(uuid.UUID(i)) for i in ids}
    found = {
        str(scim_id): pk
        for pk, scim_id in _live(organization, USER)
        .filter(scim_id__in=wanted)
        .values_list("pk", "scim_id")
    }
    missing = sorted(wanted - set(found))
    if strict and missing:
        raise UnknownMembers(missing)
    return found


def _apply_member_changes(*, group: DirectoryRecord, changes: Sequence[MemberChange]) -> bool:
    """Apply member changes in order under the group's row lock; return whether any changed."""
    organization = group.organization
    changed = False
    for change in changes:
        links = DirectoryMembership.objects.filter(group_record=group)
        if change.op == "remove":
            # Removing an id that is not a member (or not ours) changes nothing.
            found = _resolve_members(organization=organization, ids=change.ids, strict=False)
            deleted, _ = links.filter(user_record_id__in=found.values()).delete()
            changed |= bool(deleted)
            continue
        found = _resolve_members(organization=organization, ids=change.ids, strict=True)
        wanted = set(found.values())
        if change.op == "replace":
            deleted, _ = links.exclude(user_record_id__in=wanted).delete()
            changed |= bool(deleted)
        present = set(
            links.filter(user_record_id__in=wanted).values_list("user_record_id", flat=True)
        )
        missing = wanted - present
        if missing:
            DirectoryMembership.objects.bulk_create(
                [DirectoryMembership(group_record=group, user_record_id=pk) for pk in missing]
            )
            changed = True
    return changed


def record_create(
    *,
    organization: Organization,
    resource_type: str,
    document: dict,
    mirror: dict,
    member_ids: Sequence[str] | None = None,
    run: ProvisioningRun | None = None,
    request_id: str = "",
) -> DirectoryRecord:
    """Create a record from a canonical document (and a group's members); event ``created``."""
    with transaction.atomic():
        _check_unique(
            organization=organization, resource_type=resource_type, mirror=mirror, exclude_pk=None
        )
        record = DirectoryRecord(
            organization=organization, resource_type=resource_type, document=document, **mirror
        )
        _save_unique(record, mirror=mirror, create=True, update_fields=None)
        if member_ids:
            _apply_member_changes(group=record, changes=[MemberChange("add", tuple(member_ids))])
        change_event_append(
            record=record, kind=ChangeEvent.Kind.CREATED, run=run, request_id=request_id
        )
    return record


def record_get_for_update(
    *, organization: Organization, resource_type: str, scim_id: str
) -> DirectoryRecord:
    """Lock and return a live record (call inside a transaction)."""
    try:
        key = uuid.UUID(str(scim_id))
    except ValueError:
        raise RecordNotFound(scim_id)
    record = _live(organization, resource_type).select_for_update().filter(scim_id=key).first()
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
    run: ProvisioningRun | None = None,
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
    with transaction.atomic():
        record = record_get_for_update(
            organization=organization, resource_type=resource_type, scim_id=scim_id
        )
        was_active = record.active
        document_changed = False
        if change is not None:
            document, mirror = change(record)
            current = {field: getattr(record, field) for field in mirror}
            if document != record.document or mirror != current:
                document_changed = True
                _check_unique(
                    organization=organization,
                    resource_type=resource_type,
                    mirror={k: v for k, v in mirror.items() if v != current.get(k)},
                    exclude_pk=record.pk,
                )
                record.document = document
                for field, value in mirror.items():
                    setattr(record, field, value)
        members_changed = (
            _apply_member_changes(group=record, changes=member_changes) if member_changes else False
        )
        if not document_changed and not members_changed:
            return RecordWrite(record=record, changed=False, event=None)
        record.version += 1
        fields = ["version", "updated_at"]
        if document_changed:
            fields += ["document", *mirror.keys()]
        _save_unique(
            record, mirror=mirror if document_changed else {}, create=False, update_fields=fields
        )
        event = change_event_append(
            record=record,
            kind=_event_kind(record, was_active=was_active, document_changed=document_changed),
            run=run,
            request_id=request_id,
        )
    return RecordWrite(record=record, changed=True, event=event)


def record_delete(
    *,
    organization: Organization,
    resource_type: str,
    scim_id: str,
    run: ProvisioningRun | None = None,
    request_id: str = "",
) -> DirectoryRecord:
    """Tombstone a record (invisible to SCIM from now on) and append a ``deleted`` event.

    The apply job converges the member/group to "gone" and then purges the tombstone; the
    tombstone frees the userName/externalId at once (the unique constraints skip it).
    """
    with transaction.atomic():
        record = record_get_for_update(
            organization=organization, resource_type=resource_type, scim_id=scim_id
        )
        record.deleted_at = timezone.now()
        record.version += 1
        record.save(update_fields=["deleted_at", "version", "updated_at"])
        change_event_append(
            record=record, kind=ChangeEvent.Kind.DELETED, run=run, request_id=request_id
        )
    return record
