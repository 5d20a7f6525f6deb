"""A few thousand mixed directory changes applied out of order end equal to the directory."""

import random

import pytest

from directory_sync.engine import drain, events_drain
from directory_sync.models import ChangeEvent, DirectoryRecord, SyncSettings
from members import services as member_services
from members.models import Group, Member

from .engine_factories import (
    _attributes_of,
    directory_differences,
    event_record_apply,
    group_create,
    group_update,
    record_delete,
    sync_settings_make,
    user_create,
    user_update,
)

pytestmark = pytest.mark.django_db

DEPARTMENTS = ["Sales", "Support", "Engineering", "Legal", ""]


class Directory:
    """A random Entra tenant changing over time, written through the SCIM-layer factories."""

    def __init__(self, organization, rng: random.Random):
        self.organization, self.rng = organization, rng
        self.users: list[DirectoryRecord] = []
        self.groups: list[DirectoryRecord] = []
        self.serial = 0

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def live_users(self):
        return [u for u in self.users if u.deleted_at is None]

    def step(self) -> None:
        rng = self.rng
        roll = rng.random()
        users = self.live_users()
        if roll < 0.2 or len(users) < 5:
            n = self._next()
            self.users.append(
                user_create(
                    self.organization,
                    user_name=f"user{n}@acme.example",
                    display_name=f"User {n}",
                    given_name=f"Given{n}",
                    email=f"user{n}@acme.example",
                    phone=f"+96655{n:07d}",
                    department=rng.choice(DEPARTMENTS),
                    manager=rng.choice(users) if users and rng.random() < 0.5 else None,
                )
            )
        elif roll < 0.6:
            record = rng.choice(users)
            change = rng.choice(["title", "department", "manager", "name", "email", "phone"])
            n = self._next()
            values = {
                "title": {"title": f"Title {n}"},
                "department": {"department": rng.choice(DEPARTMENTS) or None},
                "manager": {"manager": rng.choice(users) if rng.random() < 0.8 else None},
                "name": {"display_name": f"Renamed {n}", "family_name": f"Family{n}"},
                "email": {"email": f"changed{n}@acme.example"},
                "phone": {"phone": f"+96656{n:07d}"},
            }[change]
            self._replace(user_update(record, **values))
        elif roll < 0.65:
            self._rotate(users)
        elif roll < 0.7:
            record = rng.choice(users)
            self._replace(user_update(record, active=not record.active))
        elif roll < 0.75:
            self._replace(record_delete(rng.choice(users)))
        else:
            self._group_step(users)

    def _rotate(self, users) -> None:
        """Two or three users pass their mobile numbers (or emails) round: A takes B's, B
        takes C's (or A's), ... one PATCH each, so the directory's values stay distinct."""
        rng = self.rng
        if len(users) < 3:
            return
        chosen = rng.sample(users, k=rng.choice([2, 3]))
        key = rng.choice(["phone", "email"])
        values = [_attributes_of(r.document)[key] for r in chosen]
        order = list(range(len(chosen)))
        rng.shuffle(order)  # the PATCHes arrive in any order
        for i in order:
            self._replace(user_update(chosen[i], **{key: values[(i + 1) % len(chosen)]}))

    def _group_step(self, users) -> None:
        rng = self.rng
        live = [g for g in self.groups if g.deleted_at is None]
        roll = rng.random()
        if roll < 0.3 or not live:
            n = self._next()
            self.groups.append(
                group_create(
                    self.organization,
                    display_name=f"Group {n}",
                    members=rng.sample(users, k=min(len(users), rng.randint(0, 8))),
                )
            )
        elif roll < 0.85:
            group = rng.choice(live)
            members = rng.sample(users, k=min(len(users), rng.randint(0, 12)))
            self._replace(group_update(group, members=members))
        elif roll < 0.95:
            self._replace(group_update(rng.choice(live), display_name=f"Group {self._next()}"))
        else:
            self._replace(record_delete(rng.choice(live)))

    def _replace(self, record: DirectoryRecord) -> None:
        target = self.users if record.resource_type == "User" else self.groups
        for i, existing in enumerate(target):
            if existing.pk == record.pk:
                target[i] = record


def apply_shuffled(organization, rng: random.Random, fraction: float) -> None:
    """Apply the records of a random part of the events, one at a time in random order, plus
    some records of events already finished (redelivered)."""
    pending = list(
        ChangeEvent.objects.filter(organization=organization, status="pending").values_list(
            "id", flat=True
        )
    )
    finished = list(
        ChangeEvent.objects.filter(organization=organization)
        .exclude(status="pending")
        .values_list("id", flat=True)[:50]
    )
    jobs = rng.sample(pending, k=int(len(pending) * fraction))
    jobs += rng.sample(finished, k=min(len(finished), 5))
    rng.shuffle(jobs)
    for event_id in jobs:
        event_record_apply(event_id)


@pytest.mark.parametrize("mode", ["per_event", "drain"])
def test_thousands_of_mixed_events_applied_out_of_order_converge_to_the_directory(
    organization, mode, monkeypatch, caplog
):
    """``drain``: organization drains (small batches and chunks, so records meet their
    managers, groups and older versions across chunk and batch boundaries) mixed with
    records applied one at a time in random order, some more than once."""
    rng = random.Random(20261126)
    monkeypatch.setattr(drain, "DRAIN_CHUNK", 16)
    sync_settings_make(
        organization,
        identify_by=SyncSettings.IdentifyBy.PHONE,
        duplicate_department_policy=SyncSettings.DuplicateDepartmentPolicy.FIRST_MATCH,
    )
    # Two "Engineering" departments: the first-match policy must pick the same one every time.
    member_services.department_path_ensure(organization=organization, path=["A", "Engineering"])
    member_services.department_path_ensure(organization=organization, path=["B", "Engineering"])
    directory = Directory(organization, rng)

    for _round in range(20):
        for _ in range(100):
            directory.step()
        if mode == "drain" and rng.random() < 0.6:
            events_drain(organization_id=organization.pk, batch_size=rng.choice([7, 50, 500]))
        else:
            apply_shuffled(organization, rng, fraction=rng.choice([0.0, 0.3, 0.7]))
    if mode == "drain":
        events_drain(organization_id=organization.pk, batch_size=40)
    else:
        apply_shuffled(organization, rng, fraction=1.0)

    events = ChangeEvent.objects.filter(organization=organization)
    assert events.count() >= 2000
    # The batched path never fell back on an unexpected error (refusals are expected).
    assert not [r for r in caplog.records if "rolled back" in r.getMessage()]
    assert set(events.values_list("status", flat=True)) <= {"applied", "skipped"}
    assert directory_differences(organization) == []
    active_users = DirectoryRecord.objects.filter(
        organization=organization, resource_type="User", active=True, deleted_at__isnull=True
    )
    assert Member.objects.filter(organization=organization).count() == active_users.count()
    assert Group.objects.filter(organization=organization).count() == (
        DirectoryRecord.objects.filter(
            organization=organization, resource_type="Group", deleted_at__isnull=True
        ).count()
    )
    # Every tombstone was purged once applied.
    assert not DirectoryRecord.objects.filter(deleted_at__isnull=False).exists()
