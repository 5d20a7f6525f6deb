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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_group_members_replace_while_the_engine_holds_the_user_does_not_deadlock(
    require_postgres, scim
):
    """The engine holds a user record (its batch lock) and then asks for the group, while a
    SCIM PATCH holds that group and, at COMMIT, checks its new membership row's foreign key
    against the user record (FOR KEY SHARE). With the records locked FOR UPDATE that was a
    deadlock, answered 503; FOR NO KEY UPDATE lets the key check through."""
    import time

    from django.db import transaction

    from directory_sync.engine.records import record_lock, users_lock

    user = create_user(scim)
    group = create_group(scim)
    user_pk = DirectoryRecord.objects.get(scim_id=user["id"]).pk
    group_pk = DirectoryRecord.objects.get(scim_id=group["id"]).pk
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        scim_pid = cursor.fetchone()[0]
    holding, patched = threading.Event(), threading.Event()
    errors: list = []

    def engine_side():
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    # The SCIM request is the one PostgreSQL aborts if there is a cycle.
                    cursor.execute("SET LOCAL deadlock_timeout = '20s'")
                assert [r.pk for r in users_lock([user_pk])] == [user_pk]
                holding.set()
                # Until the PATCH waits for a lock (before the fix) or has answered.
                deadline = time.monotonic() + 10
                while not patched.is_set() and time.monotonic() < deadline:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_stat_clear_snapshot()")
                        cursor.execute(
                            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                            [scim_pid],
                        )
                        row = cursor.fetchone()
                    if row and row[0] == "Lock":
                        break
                    time.sleep(0.02)
                assert record_lock(group_pk) is not None
        except Exception as exc:  # reported by the test
            errors.append(exc)
            holding.set()
        finally:
            connection.close()

    thread = threading.Thread(target=engine_side)
    thread.start()
    try:
        assert holding.wait(10)
        body = patch_body({"op": "Replace", "path": "members", "value": [{"value": user["id"]}]})
        response = scim.patch(f"/Groups/{group['id']}", json=body)
    finally:
        patched.set()
        thread.join(30)

    assert errors == []
    assert response.status_code in (200, 204), response.content
    assert list(DirectoryMembership.objects.values_list("user_record_id", flat=True)) == [user_pk]
