"""Two Entra workers creating the same user at once (PostgreSQL: real row locks)."""

import threading

import pytest
from django.db import connection

from directory_sync.models import ChangeEvent, DirectoryMembership, DirectoryRecord

from .conftest import create_group, create_user, entra_user, patch_body


def _in_threads(count: int, call) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_of_the_same_user_give_one_201_and_one_409(require_postgres, scim):
    statuses = _in_threads(2, lambda: scim.post("/Users", json=entra_user()).status_code)

    assert sorted(statuses) == [201, 409]
    assert DirectoryRecord.objects.filter(resource_type="User").count() == 1
    assert ChangeEvent.objects.filter(kind="created").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_member_adds_to_one_group_lose_nothing(require_postgres, scim):
    users = [
        create_user(
            scim, user_name=f"u{i}@contoso.com", external_id=f"o{i}", mobile=f"+96651234567{i}"
        )
        for i in range(4)
    ]
    group = create_group(scim)

    def add(index: int):
        body = patch_body(
            {"op": "Add", "path": "members", "value": [{"value": users[index]["id"]}]}
        )
        return scim.patch(f"/Groups/{group['id']}", json=body).status_code

    counter = iter(range(4))
    lock = threading.Lock()

    def next_add():
        with lock:
            index = next(counter)
        return add(index)

    assert _in_threads(4, next_add) == [204] * 4
    assert DirectoryMembership.objects.count() == 4
    assert DirectoryRecord.objects.get(scim_id=group["id"]).version == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_patches_of_one_user_keep_both_changes(require_postgres, scim):
    user = create_user(scim)
    changes = iter([("title", "Lead"), ("displayName", "A. Wong")])
    lock = threading.Lock()

    def patch():
        with lock:
            path, value = next(changes)
        body = patch_body({"op": "Replace", "path": path, "value": value})
        return scim.patch(f"/Users/{user['id']}", json=body).status_code

    assert _in_threads(2, patch) == [200, 200]
    document = DirectoryRecord.objects.get(scim_id=user["id"]).document
    assert (document["title"], document["displayName"]) == ("Lead", "A. Wong")
