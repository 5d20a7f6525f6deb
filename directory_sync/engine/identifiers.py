"""Users, first half: what the directory wants for each record of a batch and who may take
which identifier (plan → identify → clashes), pulling in the records a decision depends on."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_noop

from members.models import Member, Organization

from ..models import ChangeEvent, DirectoryRecord, ReviewItem, SyncSettings
from ..notes import Message, exception_reason
from .departments import DepartmentPlan
from .fields import document_member_fields, email_check, phone_normalise
from .records import users_lock
from .results import ApplyError, Notes, Outcome, Status

# --- users: one path, a batch (applying one record is a batch of one) ----------------------
#
# Identifiers (mobile number, email) are unique per organization and move between users: two
# users swap numbers, or a number rotates A→B→C→A over several PATCHes. A value another member
# holds is judged against the *directory's* state, not the members' current values: when the
# holder's directory record (its current document) no longer wants the value, that record is
# applied in the same transaction (pulled into the batch) and gives it up; members whose value
# moves to another member of the batch are cleared first, then set (the unique constraints are
# partial indexes, which PostgreSQL cannot defer). A record that failed because a value was
# taken is applied again (pulled) as soon as a batch frees that value. What remains a refusal
# (or, for the attribute that does not identify members, a possible duplicate): the value
# belongs to a member created in Beem, or to a directory user whose current document holds it.

IDENTIFIER_KEYS = ("phone", "email")


@dataclass
class UserPlan:
    record: DirectoryRecord
    document: dict
    # The directory's member fields; "phone"/"email" normalised, or absent when not synced.
    fields: dict
    notes: Notes
    member: Member | None = None
    # An inactive or deleted user: its member is deleted.
    remove: bool = False
    # A refusal known from the document alone (invalid identifier).
    refused: Message | str = ""
    # The refusal of this apply (``refused`` or a clash) and the values not synced: key ->
    # the owner of the value (a Member, or the plan of the directory user that keeps it).
    error: Message | str = ""
    rejected: dict[str, object] = field(default_factory=dict)
    created: bool = False
    outcome: str = Outcome.UPDATED
    departments: DepartmentPlan | None = None

    def current(self, key: str) -> str | None:
        value = getattr(self.member, key) if self.member is not None else None
        return (value.lower() if key == "email" else value) if value else None

    def desired(self, key: str) -> str | None:
        if self.remove:
            return None
        if key not in self.fields:
            return self.current(key)
        return self.fields[key] or None

    def final(self, key: str) -> str | None:
        """The value the member ends with if this plan is applied as judged so far."""
        if self.remove:
            return None
        if self.error or key in self.rejected:
            return self.current(key)
        return self.desired(key)

    def judged_reset(self) -> None:
        self.error, self.rejected = self.refused, {}
        self.member, self.outcome = self.record.member, Outcome.UPDATED


def user_plan(record: DirectoryRecord, sync_settings: SyncSettings) -> UserPlan:
    """Read what the directory wants for ``record`` (no write)."""
    document = record.document or {}
    notes = Notes()
    if record.deleted_at is not None or not record.active:
        return UserPlan(record, document, {}, notes, member=record.member, remove=True)
    fields = document_member_fields(document)
    plan = UserPlan(record, document, fields, notes, member=record.member)
    try:
        phone_normalise(
            fields,
            identify_by=sync_settings.identify_by,
            default_country=sync_settings.default_phone_country or None,
            notes=notes,
        )
        email_check(fields, identify_by=sync_settings.identify_by, notes=notes)
    except ApplyError as exc:
        plan.refused = plan.error = exception_reason(exc)
    return plan


def _identifier(sync_settings: SyncSettings) -> str:
    return "email" if sync_settings.identify_by == SyncSettings.IdentifyBy.EMAIL else "phone"


def attribute_label(key: str) -> Message:
    return Message(
        gettext_noop("The mobile number") if key == "phone" else gettext_noop("The email")
    )


def owner_member(owner: object) -> Member | None:
    return owner.member if isinstance(owner, UserPlan) else owner


def owner_member_label(owner: object) -> str:
    member = owner_member(owner)
    if member is not None:
        return member_label(member)
    fields = owner.fields
    name = fields.get("display_name") or " ".join(
        p for p in (fields.get("given_name"), fields.get("family_name")) if p
    )
    return name or fields.get("email") or fields.get("phone") or owner.record.user_name or ""


@dataclass
class _Holders:
    """The members holding values a batch wants, and the directory records they are linked to
    (records outside the batch only)."""

    members: dict[tuple[str, str], Member]
    records: dict[int, DirectoryRecord]


def _holders_read(organization_id: int, plans: list[UserPlan]) -> _Holders:
    wanted = {key: {p.desired(key) for p in plans} - {None} for key in IDENTIFIER_KEYS}
    q = Q()
    if wanted["phone"]:
        q |= Q(phone__in=wanted["phone"])
    if wanted["email"]:
        q |= Q(email_lower__in=wanted["email"])
    if not q:
        return _Holders({}, {})
    planned = {p.member.pk: p.member for p in plans if p.member is not None}
    holders: dict[tuple[str, str], Member] = {}
    for member in (
        Member.objects.filter(organization_id=organization_id)
        .annotate(email_lower=Lower("email"))
        .filter(q)
    ):
        member = planned.get(member.pk, member)
        if member.phone in wanted["phone"]:
            holders[("phone", member.phone)] = member
        if member.email and member.email.lower() in wanted["email"]:
            holders[("email", member.email.lower())] = member
    outside = {m.pk for m in holders.values()} - set(planned)
    records = (
        {r.member_id: r for r in DirectoryRecord.objects.filter(member_id__in=outside)}
        if outside
        else {}
    )
    return _Holders(holders, records)


def _refusal(key: str, value: str, owner: object, holders: _Holders) -> Message:
    if isinstance(owner, UserPlan):
        record = owner.record
    else:
        record = holders.records.get(owner.pk)
    label = (
        Message(
            gettext_noop("directory user %(user)s"),
            user=record.user_name or record.display_name,
        )
        if record is not None
        else member_label(owner)
    )
    return Message(
        gettext_noop("%(attribute)s %(value)s already belongs to %(owner)s."),
        attribute=attribute_label(key),
        value=value,
        owner=label,
    )


def _users_judge(plans: list[UserPlan], holders: _Holders, identifier: str) -> None:
    """Decide which plans may take their identifiers (see the section comment).

    A value wanted by several plans goes to the one whose member holds it, else to the first
    (record order); a value held by a member outside the batch stays with it. The loser is
    refused when the value identifies members, else keeps its own value (a possible
    duplicate). Losing reverts a plan to its member's values, which may decide another
    conflict: repeat until nothing changes.
    """
    for plan in plans:
        plan.judged_reset()
    linked = {p.member.pk for p in plans if p.member is not None}
    linked |= set(holders.records)
    # Identify: a new directory user takes the member created in Beem with its identifier.
    for plan in plans:
        if plan.member is not None or plan.remove or plan.error:
            continue
        value = plan.fields.get(identifier)
        found = holders.members.get((identifier, value)) if value else None
        if found is not None and found.pk not in linked:
            plan.member, plan.outcome = found, Outcome.LINKED
            linked.add(found.pk)
    planned = {p.member.pk for p in plans if p.member is not None}
    while True:
        claims: dict[tuple[str, str], list[UserPlan]] = {}
        for plan in plans:
            for key in IDENTIFIER_KEYS:
                value = plan.final(key)
                if value:
                    claims.setdefault((key, value), []).append(plan)
        settled, open_ = [], []
        for (key, value), claimants in claims.items():
            holder = holders.members.get((key, value))
            if holder is not None and holder.pk not in planned:
                settled.append((key, value, holder, claimants))
            elif len(claimants) > 1:
                owner = next((p for p in claimants if p.current(key) == value), None)
                target = settled if owner is not None else open_
                owner = owner or claimants[0]
                target.append((key, value, owner, [p for p in claimants if p is not owner]))
        # Owners that cannot lose the value first; an undecided one only when none is left,
        # since deciding it may make another plan lose and revert.
        losses = settled or open_[:1]
        changed = False
        for key, value, owner, losers in losses:
            for plan in losers:
                if plan.final(key) != value:
                    continue  # reverted by an earlier loss of this round
                if key == identifier:
                    plan.error = _refusal(key, value, owner, holders)
                else:
                    plan.rejected[key] = owner
                changed = True
        for plan in plans:
            if (
                not plan.error
                and not plan.remove
                and not plan.final("phone")
                and not plan.final("email")
            ):
                plan.error = Message(
                    gettext_noop("A member needs a mobile number or an email address.")
                )
                changed = True
        if not changed:
            return


def _released(plans: list[UserPlan]) -> dict[str, set[str]]:
    released: dict[str, set[str]] = {key: set() for key in IDENTIFIER_KEYS}
    for plan in plans:
        for key in IDENTIFIER_KEYS:
            current = plan.current(key)
            if current and plan.final(key) != current:
                released[key].add(current)
    return released


def _waiting_records(
    organization_id: int,
    sync_settings: SyncSettings,
    plans: list[UserPlan],
    released: dict[str, set[str]],
) -> list[int]:
    """Records of the organization that wait for a value this batch frees: their last apply
    failed (the value was taken), or left it unsynced as a possible duplicate."""
    members = [p.member.pk for p in plans if p.member is not None and p.member.pk is not None]
    candidates = set(
        ChangeEvent.objects.filter(
            organization_id=organization_id, status=Status.FAILED, record__isnull=False
        ).values_list("record_id", flat=True)
    ) | set(
        ReviewItem.objects.filter(
            organization_id=organization_id,
            kind=ReviewItem.Kind.POSSIBLE_DUPLICATE,
            status=ReviewItem.Status.OPEN,
            other_member_id__in=members,
            record__isnull=False,
        ).values_list("record_id", flat=True)
    )
    candidates -= {p.record.pk for p in plans}
    if not candidates:
        return []
    waiting = []
    for record in DirectoryRecord.objects.filter(
        pk__in=candidates,
        resource_type=DirectoryRecord.ResourceType.USER,
        deleted_at__isnull=True,
        active=True,
    ).select_related("member"):
        plan = user_plan(record, sync_settings)
        if any(
            plan.desired(key) in released[key] and plan.desired(key) != plan.current(key)
            for key in IDENTIFIER_KEYS
        ):
            waiting.append(record.pk)
    return waiting


def users_plan(
    plans: list[UserPlan], organization: Organization, sync_settings: SyncSettings
) -> _Holders:
    """Identify and judge ``plans``, pulling in the records a decision depends on: holders of
    wanted values whose directory record no longer wants them, and records waiting for a
    value the batch frees. Set-based: a few statements per round, one round when nothing
    moves between users (an initial sync)."""
    identifier = _identifier(sync_settings)
    # Each record is pulled at most once (a record that could not be locked stays outside).
    tried: set[int] = set()
    while True:
        holders = _holders_read(organization.pk, plans)
        planned = {p.record.pk for p in plans}
        pull = []
        for (key, value), member in holders.members.items():
            record = holders.records.get(member.pk)
            if record is None or record.pk in planned:
                continue
            record.member = member
            if record.pk not in tried and user_plan(record, sync_settings).final(key) != value:
                pull.append(record.pk)
        if not pull:
            _users_judge(plans, holders, identifier)
            released = _released(plans)
            if any(released.values()):
                pull = [
                    pk
                    for pk in _waiting_records(organization.pk, sync_settings, plans, released)
                    if pk not in tried
                ]
        if not pull:
            return holders
        tried.update(pull)
        for record in users_lock(sorted(set(pull))):
            record.organization = organization
            plans.append(user_plan(record, sync_settings))


def member_label(member: Member) -> str:
    return member.full_name or member.email or member.phone or f"#{member.pk}"
