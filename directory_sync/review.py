"""Review items: decisions the sync leaves to an administrator (services for the UI).

Two kinds (``ReviewItem.Kind``):

- **duplicate_department**: a plain department name matches several Beem departments and the
  policy is "let me choose". :func:`review_department_choose` records the pick; the engine keeps
  it on every later apply until the directory sends another department name, which opens a new
  item. The pick can be changed later by choosing again.
- **possible_duplicate**: the directory user was created (or updated) as member A, but member B
  already has A's email (or mobile number) — typically B was created in Beem by the other
  identifier. :func:`review_duplicate_resolve` with

  - ``"link"``: the directory record takes over B (B is the real person). Everything A gathered
    (resources, groups, departments, reports) moves to B, A is deleted, the record is linked
    to B and re-applied, so B gets the directory profile and becomes directory-managed.
  - ``"merge"``: the other way round: B is folded into A (B's resources, groups, departments and
    reports move to A, B is deleted); the record stays linked to A and is re-applied, so A now
    also gets the email or mobile number B was holding. Use it when B is a stale account.
  - ``"keep_both"``: they are different people; nothing changes and the item stays resolved
    (the engine does not raise the same pair again).

Every resolution is recorded in the audit log.

Concurrency: a decision locks the directory record before the review item, the order of the
sync engine (records, then the review items it opens or settles). Other conflicts remain
possible (member rows the engine writes while a merge moves them): PostgreSQL then aborts
one side with a deadlock, and a decision that lost is run again (:func:`_retried`) instead of
failing the administrator's request.
"""

import logging
from dataclasses import dataclass

import psycopg.errors
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members import services as member_services
from members.models import Department, GroupMembership, Member, Resource

from .engine import ApplyResult, record_apply
from .models import DirectoryRecord, ReviewItem

logger = logging.getLogger(__name__)

DUPLICATE_ACTIONS = ("link", "keep_both", "merge")
# Attempts of a decision's transaction that PostgreSQL aborted to break a deadlock.
ATTEMPTS = 4
_RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class ReviewError(ValueError):
    """The decision cannot be applied (wrong item, stale item, department not a candidate)."""


def _retried(run):
    """``run()`` (one transaction), again when PostgreSQL aborted it for a deadlock or a
    serialization failure; not inside a caller's transaction, which the abort has spoiled."""
    attempt = 1
    while True:
        try:
            return run()
        except OperationalError as exc:
            if (
                not isinstance(exc.__cause__, _RETRIED)
                or attempt >= ATTEMPTS
                or connection.in_atomic_block
            ):
                raise
            logger.info("review decision retried after %s", exc.__cause__.__class__.__name__)
            attempt += 1


def _actor_label(actor) -> str | None:
    return f"admin:{actor.get_username()}" if actor is not None else None


def _item_lock(item: ReviewItem, kind: str) -> ReviewItem:
    locked = ReviewItem.objects.select_for_update().filter(pk=item.pk).first()
    if locked is None:
        raise ReviewError(_("This review item no longer exists."))
    if locked.kind != kind:
        raise ReviewError(_("This review item is not of the expected kind."))
    return locked


def _resolve(item: ReviewItem, *, resolution: str, actor) -> None:
    item.status = ReviewItem.Status.RESOLVED
    item.resolution = resolution
    item.resolved_by = actor
    item.resolved_at = timezone.now()


def review_department_choose(*, item: ReviewItem, department: Department, actor) -> ReviewItem:
    """Put the held member in ``department`` (one of the candidates); sticky, re-applies."""
    item = _retried(lambda: _department_choose(item, department, actor))
    if item.record_id is not None:
        _retried(lambda: record_apply(record_id=item.record_id))
    return item


def _department_choose(item: ReviewItem, department: Department, actor) -> ReviewItem:
    with transaction.atomic():
        item = _item_lock(item, ReviewItem.Kind.DUPLICATE_DEPARTMENT)
        if department.organization_id != item.organization_id or not (
            item.candidates.filter(pk=department.pk).exists()
        ):
            raise ReviewError(
                _("Choose one of the departments named “%(name)s”.")
                % {"name": item.directory_value}
            )
        previous = item.chosen_department.name if item.chosen_department_id else None
        item.chosen_department = department
        _resolve(item, resolution="department_chosen", actor=actor)
        item.save(
            update_fields=[
                "chosen_department",
                "status",
                "resolution",
                "resolved_by",
                "resolved_at",
            ]
        )
        member_services.audit_record(
            organization=item.organization,
            action="review.department_chosen",
            actor=actor,
            actor_label=_actor_label(actor),
            detail={
                "review_item": item.pk,
                "directory_value": item.directory_value,
                "department": department.pk,
                "department_name": department.name,
                "previous": previous,
            },
        )
    return item


@dataclass(frozen=True)
class DuplicatePreview:
    """What a link or a merge will do, for the administrator's confirmation."""

    action: str
    kept: Member
    removed: Member
    directory_user: str
    resources: int
    resource_names: list[str]
    groups: int
    reports: int
    # The removed member's email or mobile number, which the kept member takes over.
    taken_over: list[str]


PREVIEW_RESOURCE_NAMES = 5


def _kept_and_removed(item: ReviewItem, action: str) -> tuple[Member, Member]:
    if action == "link":
        return item.other_member, item.member
    return item.member, item.other_member


def review_duplicate_preview(*, item: ReviewItem, action: str) -> DuplicatePreview:
    """What :func:`review_duplicate_resolve` with ``action`` ("link" or "merge") would do now;
    :class:`ReviewError` when it cannot be done."""
    if action not in ("link", "merge"):
        raise ReviewError(_("Unknown action %(action)s.") % {"action": action})
    if item.status != ReviewItem.Status.OPEN:
        raise ReviewError(_("This review item is already resolved."))
    if item.member is None or item.other_member is None or item.record is None:
        raise ReviewError(_("One of the two members no longer exists."))
    kept, removed = _kept_and_removed(item, action)
    resources = Resource.objects.filter(owner=removed).order_by("name")
    return DuplicatePreview(
        action=action,
        kept=kept,
        removed=removed,
        directory_user=item.record.user_name or item.record.display_name,
        resources=resources.count(),
        resource_names=list(resources.values_list("name", flat=True)[:PREVIEW_RESOURCE_NAMES]),
        groups=GroupMembership.objects.filter(member=removed)
        .exclude(group__memberships__member=kept)
        .count(),
        reports=Member.objects.filter(manager=removed).exclude(pk=kept.pk).count(),
        taken_over=[
            getattr(removed, key)
            for key in ("phone", "email")
            if getattr(removed, key) and not getattr(kept, key)
        ],
    )


@dataclass(frozen=True)
class DuplicateResolution:
    """What a decision did: the item, and for a link or a merge who stayed and who went."""

    item: ReviewItem
    action: str
    kept_name: str = ""
    removed_name: str = ""
    resources_moved: int = 0


def review_duplicate_resolve(*, item: ReviewItem, action: str, actor) -> DuplicateResolution:
    """Resolve a possible duplicate with ``action`` in :data:`DUPLICATE_ACTIONS`."""
    if action not in DUPLICATE_ACTIONS:
        raise ReviewError(_("Unknown action %(action)s.") % {"action": action})
    item, detail = _retried(lambda: _duplicate_resolve(item, action, actor))
    if action != "keep_both" and item.record_id is not None:
        # The freed email or mobile number and the directory profile apply now.
        _retried(lambda: record_apply(record_id=item.record_id))
    if action == "keep_both":
        return DuplicateResolution(item=item, action=action)
    kept, removed = (
        ("other_member_name", "directory_member_name")
        if action == "link"
        else ("directory_member_name", "other_member_name")
    )
    return DuplicateResolution(
        item=item,
        action=action,
        kept_name=detail[kept] or "",
        removed_name=detail[removed] or "",
        resources_moved=detail.get("moved_resources", 0),
    )


def _duplicate_resolve(item: ReviewItem, action: str, actor) -> tuple[ReviewItem, dict]:
    with transaction.atomic():
        # The engine's lock order: the directory record first, then the review item.
        record_id = (
            ReviewItem.objects.filter(pk=item.pk).values_list("record_id", flat=True).first()
        )
        record = (
            DirectoryRecord.objects.select_for_update(no_key=True).filter(pk=record_id).first()
            if record_id
            else None
        )
        item = _item_lock(item, ReviewItem.Kind.POSSIBLE_DUPLICATE)
        if item.record_id != record_id:
            record = None  # deleted meanwhile (the item's record is SET_NULL)
        if item.status != ReviewItem.Status.OPEN:
            raise ReviewError(_("This review item is already resolved."))
        directory_member, other = item.member, item.other_member
        detail = {
            "review_item": item.pk,
            "action": action,
            "directory_member": directory_member.pk if directory_member else None,
            "directory_member_name": directory_member.full_name if directory_member else None,
            "other_member": other.pk if other else None,
            "other_member_name": other.full_name if other else None,
        }
        if action != "keep_both":
            if directory_member is None or other is None or record is None:
                raise ReviewError(_("One of the two members no longer exists."))
            if record.member_id != directory_member.pk:
                raise ReviewError(
                    _("The directory user is no longer linked to %(member)s.")
                    % {"member": directory_member.full_name}
                )
        if action != "keep_both" and (
            DirectoryRecord.objects.filter(member=other).exclude(pk=record.pk).exists()
        ):
            raise ReviewError(
                _(
                    "%(member)s is linked to another directory user: they are two directory "
                    "users, fix the duplicate in Entra ID."
                )
                % {"member": other.full_name}
            )
        if action == "link":
            # Review items reference members with CASCADE: move them before the delete.
            ReviewItem.objects.filter(member=directory_member).update(member=other)
            ReviewItem.objects.filter(pk=item.pk).update(member=other, other_member=None)
            item.member, item.other_member = other, None
            merged = member_services.member_merge(
                source=directory_member, target=other, actor=actor, actor_label=_actor_label(actor)
            )
            DirectoryRecord.objects.filter(pk=record.pk).update(member=other)
            detail["moved_resources"] = merged.resources_moved
        elif action == "merge":
            ReviewItem.objects.filter(pk=item.pk).update(other_member=None)
            item.other_member = None
            merged = member_services.member_merge(
                source=other, target=directory_member, actor=actor, actor_label=_actor_label(actor)
            )
            detail["moved_resources"] = merged.resources_moved
        _resolve(item, resolution=action, actor=actor)
        item.save(
            update_fields=[
                "member",
                "other_member",
                "status",
                "resolution",
                "resolved_by",
                "resolved_at",
            ]
        )
        member_services.audit_record(
            organization=item.organization,
            action="review.duplicate_resolved",
            actor=actor,
            actor_label=_actor_label(actor),
            detail=detail,
        )
    return item, detail


def review_reapply(*, item: ReviewItem) -> ApplyResult | None:
    """Apply the item's directory record again (after an administrator fixed something)."""
    if item.record_id is None:
        return None
    return _retried(lambda: record_apply(record_id=item.record_id))
