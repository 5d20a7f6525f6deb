"""Reads of directory records for SCIM answers, always scoped to one organization.

Tombstoned records (``deleted_at`` set) are invisible here. Lists are ordered by primary key
so ``startIndex`` pagination is stable, and counted/sliced in the database.
"""

import uuid
from collections import defaultdict

from django.db.models import Q, QuerySet

from members.models import Organization

from ..models import DirectoryMembership, DirectoryRecord


def record_list(
    *, organization: Organization, resource_type: str, query: Q | None = None
) -> QuerySet[DirectoryRecord]:
    qs = DirectoryRecord.objects.filter(
        organization=organization, resource_type=resource_type, deleted_at__isnull=True
    )
    if query is not None:
        qs = qs.filter(query)
    return qs.order_by("pk")


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
