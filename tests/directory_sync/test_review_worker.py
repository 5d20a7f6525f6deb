"""Department holds through the whole path: Entra's SCIM requests, PostgreSQL, Redis and a
real Celery worker (the fixtures of test_worker.py)."""

import pytest

from directory_sync.models import ChangeEvent, DirectoryRecord, ReviewItem, SyncSettings
from directory_sync.review import review_department_choose
from members import services as member_services
from members.models import DepartmentMembership

from .scim.conftest import ENTERPRISE, create_user, patch_body
from .test_worker import _wait_for, private_redis, publish_to, worker  # noqa: F401 - fixtures

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _applied(organization) -> bool:
    return not ChangeEvent.objects.filter(
        organization=organization, status=ChangeEvent.Status.PENDING
    ).exists()


def _departments_of(scim_id: str) -> list[int]:
    record = DirectoryRecord.objects.get(scim_id=scim_id)
    return list(
        DepartmentMembership.objects.filter(member_id=record.member_id).values_list(
            "department_id", flat=True
        )
    )


def _title_patch(scim, user_id: str, title: str) -> None:
    response = scim.patch(
        f"/Users/{user_id}",
        json=patch_body({"op": "Replace", "path": "title", "value": title}),
    )
    assert response.status_code == 200, response.content


@pytest.mark.usefixtures("worker")
def test_a_title_only_patch_keeps_a_settled_department(organization, scim, admin_user):
    SyncSettings.objects.filter(organization=organization).update(
        identify_by=SyncSettings.IdentifyBy.EMAIL,
        duplicate_department_policy=SyncSettings.DuplicateDepartmentPolicy.HOLD_FOR_ADMIN,
    )
    riyadh = member_services.department_path_ensure(
        organization=organization, path=["Riyadh", "Platform"]
    )
    # Placed while "Platform" names one department.
    placed = create_user(scim, user_name="alice@contoso.com", external_id="alice")
    _wait_for(lambda: _applied(organization), timeout=60, what="the worker to create Alice")
    assert _departments_of(placed["id"]) == [riyadh.pk]

    jeddah = member_services.department_path_ensure(
        organization=organization, path=["Jeddah", "Platform"]
    )
    # Created once "Platform" is ambiguous: held, then the administrator picks Jeddah.
    held = create_user(
        scim, user_name="badr@contoso.com", external_id="badr", mobile="+966512345679"
    )
    _wait_for(lambda: _applied(organization), timeout=60, what="the worker to hold Badr")
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT, status="open")
    review_department_choose(item=item, department=jeddah, actor=admin_user)
    assert _departments_of(held["id"]) == [jeddah.pk]

    _title_patch(scim, placed["id"], "Lead")
    _title_patch(scim, held["id"], "Lead")
    _wait_for(lambda: _applied(organization), timeout=60, what="the title patches")

    assert list(
        ChangeEvent.objects.filter(organization=organization, record_version__gt=1)
        .order_by("id")
        .values_list("status", "outcome")
    ) == [("applied", "updated"), ("applied", "updated")]
    assert list(ReviewItem.objects.values_list("directory_value", "status")) == [
        ("Platform", "resolved")
    ]
    assert (_departments_of(placed["id"]), _departments_of(held["id"])) == (
        [riyadh.pk],
        [jeddah.pk],
    )
    assert set(
        DirectoryRecord.objects.filter(organization=organization).values_list(
            "document__title", f"document__{ENTERPRISE}__department"
        )
    ) == {("Lead", "Platform")}
