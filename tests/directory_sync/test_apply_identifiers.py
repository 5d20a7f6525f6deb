"""Identifiers moving between directory users converge, whatever the order of their events.

Each test runs with one record applied at a time in event order (``record_apply``), with
organization drains of
one event per batch (a change's counterpart is always in a later batch) and with whole drains.
"""

import pytest

from directory_sync.engine import drain, events_drain
from directory_sync.models import ChangeEvent, ReviewItem
from members import services as member_services
from members.models import Member

from .engine_factories import (
    directory_differences,
    event_record_apply,
    record_delete,
    sync_settings_make,
    user_create,
    user_update,
)

# The real worker's fixtures (a private Redis, a `celery worker` process).
from .test_worker import _wait_for, private_redis, publish_to, worker  # noqa: F401

pytestmark = pytest.mark.django_db

P1, P2, P3, P4 = "+966500000001", "+966500000002", "+966500000003", "+966500000004"


@pytest.fixture(params=["per_event", "drain_one_by_one", "drain"])
def apply_all(request, monkeypatch):
    monkeypatch.setattr(drain, "DRAIN_CHUNK", 2)

    def run(organization):
        if request.param == "drain":
            return events_drain(organization_id=organization.pk)
        if request.param == "drain_one_by_one":
            return events_drain(organization_id=organization.pk, batch_size=1)
        for event_id in ChangeEvent.objects.filter(
            organization=organization, status=ChangeEvent.Status.PENDING
        ).values_list("id", flat=True):
            event_record_apply(event_id)

    return run


def _phone(record) -> str | None:
    record.refresh_from_db()
    return record.member.phone


def _email(record) -> str | None:
    record.refresh_from_db()
    return record.member.email


def _statuses(organization) -> set[str]:
    return set(
        ChangeEvent.objects.filter(organization=organization).values_list("status", flat=True)
    )


def _users(organization, *phones):
    return [
        user_create(organization, user_name=f"u{i}@acme.example", phone=phone)
        for i, phone in enumerate(phones)
    ]


def test_two_users_swapping_mobile_numbers_both_apply(organization, apply_all):
    sync_settings_make(organization, identify_by="phone")
    a, b = _users(organization, P1, P2)
    apply_all(organization)

    user_update(a, phone=P2)
    user_update(b, phone=P1)
    apply_all(organization)

    assert (_phone(a), _phone(b)) == (P2, P1)
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []
    assert Member.objects.count() == 2


def test_two_users_swapping_emails_both_apply(organization, apply_all):
    sync_settings_make(organization, identify_by="email")
    a = user_create(organization, user_name="a@acme.example", email="one@acme.example")
    b = user_create(organization, user_name="b@acme.example", email="two@acme.example")
    apply_all(organization)

    user_update(a, email="Two@acme.example")
    user_update(b, email="one@acme.example")
    apply_all(organization)

    assert (_email(a), _email(b)) == ("two@acme.example", "one@acme.example")
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []


def test_emails_swapped_while_members_are_identified_by_phone_are_no_duplicates(
    organization, apply_all
):
    sync_settings_make(organization, identify_by="phone")
    a = user_create(organization, user_name="a@acme.example", phone=P1, email="one@acme.example")
    b = user_create(organization, user_name="b@acme.example", phone=P2, email="two@acme.example")
    apply_all(organization)

    user_update(a, email="two@acme.example")
    user_update(b, email="one@acme.example")
    apply_all(organization)

    assert (_email(a), _email(b)) == ("two@acme.example", "one@acme.example")
    assert directory_differences(organization) == []


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2)])
def test_a_rotation_of_three_numbers_converges_in_any_order(organization, apply_all, order):
    sync_settings_make(organization, identify_by="phone")
    users = _users(organization, P1, P2, P3)
    apply_all(organization)

    wanted = {0: P2, 1: P3, 2: P1}  # A→B's, B→C's, C→A's
    for i in order:
        user_update(users[i], phone=wanted[i])
    apply_all(organization)

    assert [_phone(u) for u in users] == [P2, P3, P1]
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []


def test_a_chain_of_moves_to_a_free_number_converges(organization, apply_all):
    sync_settings_make(organization, identify_by="phone")
    a, b, c = _users(organization, P1, P2, P3)
    apply_all(organization)

    # C takes B's, B takes A's, A a new number; the events arrive in that order.
    user_update(c, phone=P2)
    user_update(b, phone=P1)
    user_update(a, phone=P4)
    apply_all(organization)

    assert [_phone(u) for u in (a, b, c)] == [P4, P1, P2]
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []


def test_a_swap_whose_second_patch_comes_after_the_first_was_applied_converges(
    organization, apply_all
):
    """A's event is applied while B still holds A's new number in the directory: A fails
    (both directory users want one number), and B's PATCH later resolves it by itself."""
    sync_settings_make(organization, identify_by="phone")
    a, b = _users(organization, P1, P2)
    apply_all(organization)

    user_update(a, phone=P2)
    apply_all(organization)
    failed = ChangeEvent.objects.filter(record=a, status="failed").get()
    assert (
        failed.reason
        == f"The mobile number {P2} already belongs to directory user u1@acme.example."
    )

    user_update(b, phone=P1)
    apply_all(organization)

    assert (_phone(a), _phone(b)) == (P2, P1)
    failed.refresh_from_db()
    assert (failed.status, failed.outcome) == ("applied", "updated")
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []


def test_a_user_refused_for_a_taken_number_applies_once_the_holder_gives_it_up(
    organization, apply_all
):
    sync_settings_make(organization, identify_by="phone")
    a, b = _users(organization, P1, P2)
    apply_all(organization)
    user_update(a, phone=P2)
    apply_all(organization)
    assert _statuses(organization) == {"applied", "failed"}

    user_update(b, phone=P3)  # B frees P2; nothing changes in A's directory record
    apply_all(organization)

    assert (_phone(a), _phone(b)) == (P2, P3)
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []


def test_a_user_refused_for_a_taken_number_applies_once_the_holder_is_disabled(
    organization, apply_all
):
    sync_settings_make(organization, identify_by="phone")
    a, b = _users(organization, P1, P2)
    apply_all(organization)
    user_update(a, phone=P2)
    apply_all(organization)

    user_update(b, active=False)
    apply_all(organization)

    assert _phone(a) == P2
    assert Member.objects.count() == 1
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []


def test_an_email_left_unsynced_as_a_possible_duplicate_is_synced_once_freed(
    organization, apply_all
):
    sync_settings_make(organization, identify_by="phone")
    a = user_create(organization, user_name="a@acme.example", phone=P1, email="one@acme.example")
    b = user_create(organization, user_name="b@acme.example", phone=P2, email="two@acme.example")
    apply_all(organization)
    user_update(a, email="two@acme.example")
    apply_all(organization)
    assert _email(a) == "one@acme.example"  # B's directory record still holds it
    assert ReviewItem.objects.filter(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE).count() == 1

    user_update(b, email="three@acme.example")
    apply_all(organization)

    assert (_email(a), _email(b)) == ("two@acme.example", "three@acme.example")
    assert directory_differences(organization) == []
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE)
    assert (item.status, item.resolution) == ("resolved", "superseded")


def test_a_rotation_applied_one_patch_at_a_time_converges_and_leaves_no_review(
    organization, apply_all
):
    """Mobile numbers (not the identifier) rotate, each PATCH applied before the next (the
    embedded mode): the first two are left unsynced as possible duplicates for a moment."""
    sync_settings_make(organization, identify_by="email")
    users = [
        user_create(
            organization, user_name=f"u{i}@acme.example", email=f"u{i}@acme.example", phone=phone
        )
        for i, phone in enumerate((P1, P2, P3))
    ]
    apply_all(organization)

    for i, phone in enumerate((P2, P3, P1)):
        user_update(users[i], phone=phone)
        apply_all(organization)

    assert [_phone(u) for u in users] == [P2, P3, P1]
    assert not ReviewItem.objects.filter(status="open").exists()
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []


def test_a_number_held_by_a_member_created_in_beem_is_still_refused(organization, apply_all):
    sync_settings_make(organization, identify_by="phone")
    member_services.member_create(organization=organization, display_name="Local", phone=P2)
    (a,) = _users(organization, P1)
    apply_all(organization)

    user_update(a, phone=P2)
    apply_all(organization)

    assert _phone(a) == P1
    event = ChangeEvent.objects.filter(record=a).order_by("-id").first()
    assert (event.status, event.reason) == (
        "failed",
        f"The mobile number {P2} already belongs to Local.",
    )


def test_a_number_two_directory_users_want_stays_with_its_holder(organization, apply_all):
    sync_settings_make(organization, identify_by="phone")
    a, b = _users(organization, P1, P2)
    apply_all(organization)

    user_update(a, phone=P2)  # B's directory record still holds P2
    user_update(b, title="Lead")
    apply_all(organization)

    assert (_phone(a), _phone(b)) == (P1, P2)
    event = ChangeEvent.objects.filter(record=a).order_by("-id").first()
    assert (event.status, event.reason) == (
        "failed",
        f"The mobile number {P2} already belongs to directory user u1@acme.example.",
    )


def test_a_failed_event_is_skipped_once_a_newer_version_applies(organization, apply_all):
    sync_settings_make(organization, identify_by="phone")
    a, _b = _users(organization, P1, P2)
    apply_all(organization)
    user_update(a, phone=P2)
    apply_all(organization)
    failed = ChangeEvent.objects.get(record=a, status="failed")

    user_update(a, phone=P3)
    apply_all(organization)

    failed.refresh_from_db()
    assert (failed.status, failed.reason) == (
        "skipped",
        "Superseded: the directory record was applied at version 3.",
    )
    assert _phone(a) == P3


def test_a_failed_event_is_skipped_once_its_record_is_deleted(organization, apply_all):
    sync_settings_make(organization, identify_by="phone")
    a, _b = _users(organization, P1, P2)
    apply_all(organization)
    user_update(a, phone=P2)
    apply_all(organization)
    failed = ChangeEvent.objects.get(record=a, status="failed")

    record_delete(a)
    apply_all(organization)

    failed.refresh_from_db()
    assert (failed.status, failed.reason, failed.record_id) == (
        "skipped",
        "Superseded: the directory record was applied at version 3.",
        None,
    )
    assert Member.objects.count() == 1


# --- over SCIM, with a real worker on PostgreSQL --------------------------------------------

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _scim_user(scim, name: str, phone: str, email: str) -> str:
    response = scim.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"{name}@acme.example",
            "externalId": name,
            "active": True,
            "displayName": name,
            "emails": [{"type": "work", "value": email, "primary": True}],
            "phoneNumbers": [{"type": "mobile", "value": phone}],
        },
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _scim_replace(scim, scim_id: str, **paths) -> None:
    keys = {
        "phone": 'phoneNumbers[type eq "mobile"].value',
        "email": 'emails[type eq "work"].value',
    }
    response = scim.patch(
        f"/Users/{scim_id}",
        json={
            "schemas": [PATCH],
            "Operations": [
                {"op": "Replace", "path": keys[key], "value": value} for key, value in paths.items()
            ],
        },
    )
    assert response.status_code == 200, response.content


def _settled(organization) -> bool:
    return not ChangeEvent.objects.filter(organization=organization, status="pending").exists()


def _members(ids) -> list[tuple]:
    from directory_sync.models import DirectoryRecord

    found = []
    for scim_id in ids:
        record = DirectoryRecord.objects.select_related("member").get(scim_id=scim_id)
        found.append((record.member.phone, record.member.email))
    return found


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_swaps_and_rotations_over_scim_converge_with_a_real_worker(organization, scim):
    a, b, c = (
        _scim_user(scim, name, phone, f"{name}@acme.example")
        for name, phone in (("a", P1), ("b", P2), ("c", P3))
    )
    _wait_for(lambda: _settled(organization), timeout=60, what="the creates")

    # A swap whose halves are applied apart: A's PATCH alone first (B still holds P2 in the
    # directory, so it fails for now), then B's, which resolves A's by itself.
    _scim_replace(scim, a, phone=P2)
    _wait_for(lambda: _settled(organization), timeout=60, what="A's PATCH")
    _scim_replace(scim, b, phone=P1)
    _wait_for(lambda: _settled(organization), timeout=60, what="B's PATCH")
    assert _members([a, b]) == [(P2, "a@acme.example"), (P1, "b@acme.example")]

    # A rotation of numbers and a swap of emails, sent back to back.
    _scim_replace(scim, a, phone=P3)
    _scim_replace(scim, b, phone=P2, email="c@acme.example")
    _scim_replace(scim, c, phone=P1, email="b@acme.example")
    _wait_for(lambda: _settled(organization), timeout=60, what="the rotation")

    assert _members([a, b, c]) == [
        (P3, "a@acme.example"),
        (P2, "c@acme.example"),
        (P1, "b@acme.example"),
    ]
    assert _statuses(organization) <= {"applied", "skipped"}
    assert directory_differences(organization) == []
