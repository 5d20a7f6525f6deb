"""Directory records and change events written exactly as the SCIM layer writes them.

The shared data contract: the record holds the canonical SCIM document (no ``id``/``meta``),
its mirror columns equal the document, every write bumps ``version`` and appends a change event
with ``directory_sync.outbox.change_event_append`` in the same transaction.
"""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from directory_sync.engine import ApplyResult, record_apply, record_member_differences
from directory_sync.models import ChangeEvent, DirectoryMembership, DirectoryRecord, SyncSettings
from directory_sync.outbox import change_event_append
from members.models import Member, Organization

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

_UNSET = object()


def event_record_apply(event_id: int) -> ApplyResult | None:
    """Apply the record of one change event alone, as a drain applies a record outside a batch
    (``record_apply(if_stale=True)``): the tests' one-record-at-a-time mode, where records
    apply in any order and more than once (a drain per event, out of order, redelivered)."""
    record_id = ChangeEvent.objects.filter(pk=event_id).values_list("record_id", flat=True).first()
    if record_id is None:
        return None
    return record_apply(record_id=record_id, if_stale=True)


def sync_settings_make(organization: Organization, **fields) -> SyncSettings:
    settings, _ = SyncSettings.objects.update_or_create(
        organization=organization, defaults={"status": SyncSettings.Status.ACTIVE, **fields}
    )
    return settings


def user_document(
    *,
    user_name: str,
    external_id: str | None = None,
    active: bool = True,
    display_name: str = "",
    given_name: str = "",
    family_name: str = "",
    email: str | None = None,
    phone: str | None = None,
    title: str = "",
    country: str = "",
    employee_number: str = "",
    department: str = "",
    manager: DirectoryRecord | str | None = None,
) -> dict:
    document: dict = {"schemas": [USER_SCHEMA], "userName": user_name, "active": active}
    if external_id is not None:
        document["externalId"] = external_id
    if display_name:
        document["displayName"] = display_name
    name = {k: v for k, v in (("givenName", given_name), ("familyName", family_name)) if v}
    if name:
        document["name"] = name
    if email:
        document["emails"] = [{"type": "work", "value": email, "primary": True}]
    if phone:
        document["phoneNumbers"] = [{"type": "mobile", "value": phone}]
    if title:
        document["title"] = title
    if country:
        document["addresses"] = [{"type": "work", "country": country}]
    enterprise: dict = {}
    if employee_number:
        enterprise["employeeNumber"] = employee_number
    if department:
        enterprise["department"] = department
    if manager is not None:
        value = str(manager.scim_id) if isinstance(manager, DirectoryRecord) else str(manager)
        enterprise["manager"] = {"value": value}
    if enterprise:
        document["schemas"].append(ENTERPRISE)
        document[ENTERPRISE] = enterprise
    return document


def _user_mirror(document: dict) -> dict:
    email = next(
        (e["value"].lower() for e in document.get("emails", []) if e.get("type") == "work"), None
    )
    manager = (document.get(ENTERPRISE) or {}).get("manager", {}).get("value")
    return {
        "user_name": document["userName"],
        "user_name_key": document["userName"].casefold(),
        "external_id": document.get("externalId"),
        "display_name": document.get("displayName", ""),
        "work_email": email,
        "manager_scim_id": uuid.UUID(manager) if manager else None,
        "active": bool(document.get("active", True)),
    }


def user_create(organization: Organization, *, run=None, **attributes) -> DirectoryRecord:
    """POST /Users: a new user record at version 1 and its ``created`` event."""
    attributes.setdefault("external_id", str(uuid.uuid4()))
    document = user_document(**attributes)
    with transaction.atomic():
        record = DirectoryRecord.objects.create(
            organization=organization,
            resource_type=DirectoryRecord.ResourceType.USER,
            document=document,
            **_user_mirror(document),
        )
        change_event_append(record=record, kind="created", run=run)
    return record


def user_update(record: DirectoryRecord, *, run=None, **changes) -> DirectoryRecord:
    """PATCH /Users/<id>: change attributes (``None`` removes one); bumps version, appends."""
    with transaction.atomic():
        record = DirectoryRecord.objects.select_for_update(no_key=True).get(pk=record.pk)
        current = _attributes_of(record.document)
        was_active = current["active"]
        for key, value in changes.items():
            current[key] = value
        document = user_document(**{k: v for k, v in current.items() if v is not None})
        for key, value in _user_mirror(document).items():
            setattr(record, key, value)
        record.document = document
        record.version += 1
        record.save()
        if was_active and not record.active:
            kind = "deactivated"
        elif record.active and not was_active:
            kind = "reactivated"
        else:
            kind = "updated"
        change_event_append(record=record, kind=kind, run=run)
    return record


def record_delete(record: DirectoryRecord, *, run=None) -> DirectoryRecord:
    """DELETE /Users/<id> or /Groups/<id>: tombstone, bump version, ``deleted`` event."""
    with transaction.atomic():
        record = DirectoryRecord.objects.select_for_update(no_key=True).get(pk=record.pk)
        record.deleted_at = timezone.now()
        record.version += 1
        record.save()
        change_event_append(record=record, kind="deleted", run=run)
    return record


def _attributes_of(document: dict) -> dict:
    enterprise = document.get(ENTERPRISE) or {}
    name = document.get("name") or {}

    def typed(attribute, key="value"):
        return next((e.get(key) for e in document.get(attribute, [])), None)

    return {
        "user_name": document["userName"],
        "external_id": document.get("externalId"),
        "active": document.get("active", True),
        "display_name": document.get("displayName", ""),
        "given_name": name.get("givenName", ""),
        "family_name": name.get("familyName", ""),
        "email": typed("emails"),
        "phone": typed("phoneNumbers"),
        "title": document.get("title", ""),
        "country": typed("addresses", "country") or "",
        "employee_number": enterprise.get("employeeNumber", ""),
        "department": enterprise.get("department", ""),
        "manager": (enterprise.get("manager") or {}).get("value"),
    }


def group_create(
    organization: Organization, *, display_name: str, members=(), run=None
) -> DirectoryRecord:
    """POST /Groups (with members, as a PATCH right after would add them)."""
    document = {"schemas": [GROUP_SCHEMA], "displayName": display_name, "externalId": None}
    with transaction.atomic():
        record = DirectoryRecord.objects.create(
            organization=organization,
            resource_type=DirectoryRecord.ResourceType.GROUP,
            display_name=display_name,
            document=document,
        )
        DirectoryMembership.objects.bulk_create(
            [DirectoryMembership(group_record=record, user_record=m) for m in members]
        )
        change_event_append(record=record, kind="created", run=run)
    return record


def group_update(
    record: DirectoryRecord, *, display_name=_UNSET, members=_UNSET, run=None
) -> DirectoryRecord:
    """PATCH /Groups/<id>: rename and/or make the members exactly ``members``."""
    with transaction.atomic():
        record = DirectoryRecord.objects.select_for_update(no_key=True).get(pk=record.pk)
        if display_name is not _UNSET:
            record.document = {**record.document, "displayName": display_name}
            record.display_name = display_name
        kind = "updated"
        if members is not _UNSET:
            DirectoryMembership.objects.filter(group_record=record).delete()
            DirectoryMembership.objects.bulk_create(
                [DirectoryMembership(group_record=record, user_record=m) for m in members]
            )
            kind = "members_changed"
        record.version += 1
        record.save()
        change_event_append(record=record, kind=kind, run=run)
    return record


def directory_differences(organization: Organization) -> list[str]:
    """Every way Beem differs from the organization's directory; empty when they match.

    Also reports directory-managed members no active record points at (duplicates or
    leftovers).
    """
    problems = []
    linked = set()
    for record in DirectoryRecord.objects.filter(organization=organization).order_by("id"):
        for difference in record_member_differences(record):
            problems.append(f"{record}: {difference}")
        if record.member_id:
            linked.add(record.member_id)
    orphans = Member.objects.filter(organization=organization, directory_managed=True).exclude(
        pk__in=linked
    )
    for member in orphans:
        problems.append(f"directory-managed member {member.pk} ({member}) has no record")
    return problems
