"""SCIM list pages (directory_sync.scim.paging): exact totals, seeks equal to OFFSET, one
statement on PostgreSQL, resources rendered by the database equal the adapters' rendering,
memory that does not grow with the directory, and a summary in the request log."""

import json
import threading
import tracemalloc
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from directory_sync import services
from directory_sync.models import (
    RECORD_COUNT_BLOCK,
    DirectoryRecord,
    DirectoryRecordCount,
    RequestLog,
)
from directory_sync.scim import paging
from directory_sync.store import counts as record_counts
from directory_sync.store import reads as queries

from .conftest import ENTERPRISE, LIST_SCHEMA, USER_SCHEMA, create_group, create_user

USER = DirectoryRecord.ResourceType.USER
GROUP = DirectoryRecord.ResourceType.GROUP


def _document(i: int, **extra) -> dict:
    return {
        "schemas": [USER_SCHEMA],
        "userName": f"user{i}@contoso.com",
        "active": True,
        "displayName": f"User {i}",
        **extra,
    }


def _user(organization, i: int, *, pk: int | None = None, **fields) -> DirectoryRecord:
    return DirectoryRecord.objects.create(
        id=pk,
        organization=organization,
        resource_type=USER,
        user_name=f"user{i}@contoso.com",
        user_name_key=f"user{i}@contoso.com",
        display_name=f"User {i}",
        document=_document(i),
        **fields,
    )


def _group(organization, i: int, *, pk: int | None = None) -> DirectoryRecord:
    return DirectoryRecord.objects.create(
        id=pk,
        organization=organization,
        resource_type=GROUP,
        display_name=f"Group {i}",
        document={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"},
    )


def _counted(organization, resource_type: str = USER) -> int:
    rows = DirectoryRecordCount.objects.filter(
        organization=organization, resource_type=resource_type
    )
    return sum(rows.values_list("live", flat=True))


def _live(organization, resource_type: str = USER) -> int:
    return DirectoryRecord.objects.filter(
        organization=organization, resource_type=resource_type, deleted_at__isnull=True
    ).count()


def _assert_counts_exact(organization) -> None:
    assert record_counts.counts_differences(organization_id=organization.pk) == []


def _ids(response) -> list[str]:
    return [resource["id"] for resource in response.json()["Resources"]]


@pytest.fixture
def scim(scim, organization):
    """Users without a mobile number are fine: members are identified by email here."""
    services.sync_settings_update(organization=organization, identify_by="email")
    return scim


@pytest.fixture(params=["database", "python"])
def render(request, monkeypatch):
    """Run a test with the page rendered by PostgreSQL (where available) and by the adapters."""
    if request.param == "python":
        monkeypatch.setattr(paging, "renders_in_database", lambda: False)
    return request.param


# --- the counts ------------------------------------------------------------------------------


def test_count_triggers_are_installed(db):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                "AND tgrelid = 'directory_sync_directoryrecord'::regclass"
            )
            expected = {
                "directory_record_count_insert_delete",
                "directory_record_count_update",
            }
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'directory_sync_directoryrecord'"
            )
            expected = {f"directory_record_count_{op}" for op in ("insert", "delete", "update")}
        assert {row[0] for row in cursor.fetchall()} == expected


def test_counts_follow_every_liveness_change(organization, other_organization):
    records = [_user(organization, i) for i in range(4)]
    assert (_counted(organization), _live(organization)) == (4, 4)
    assert DirectoryRecordCount.objects.filter(organization=organization).first().block == (
        records[0].pk // RECORD_COUNT_BLOCK
    )

    DirectoryRecord.objects.filter(pk=records[0].pk).update(deleted_at=datetime.now(UTC))
    assert _counted(organization) == 3  # tombstone
    DirectoryRecord.objects.filter(pk=records[0].pk).update(deleted_at=None)
    assert _counted(organization) == 4  # restore
    DirectoryRecord.objects.filter(pk=records[1].pk).update(deleted_at=datetime.now(UTC))
    DirectoryRecord.objects.filter(pk=records[1].pk).delete()
    assert _counted(organization) == 3  # purging a tombstone changes nothing
    records[2].delete()
    assert _counted(organization) == 2  # a live record deleted outright
    DirectoryRecord.objects.filter(pk=records[3].pk).update(display_name="Renamed", version=2)
    assert _counted(organization) == 2  # other updates: no row at all
    DirectoryRecord.objects.filter(pk=records[3].pk).update(organization=other_organization)
    assert (_counted(organization), _counted(other_organization)) == (1, 1)
    DirectoryRecord.objects.filter(pk=records[0].pk).update(resource_type=GROUP)
    assert (_counted(organization), _counted(organization, GROUP)) == (0, 1)
    DirectoryRecord.objects.bulk_create(
        [
            DirectoryRecord(organization=organization, resource_type=USER, document=_document(i))
            for i in range(10, 15)
        ]
    )
    assert _counted(organization) == 5
    _assert_counts_exact(organization)
    _assert_counts_exact(other_organization)


def test_total_results_follow_scim_creates_and_deletes(scim, organization, render):
    users = [
        create_user(scim, user_name=f"u{i}@contoso.com", external_id=f"o{i}", mobile=None)
        for i in range(3)
    ]
    group = create_group(scim)
    assert scim.get("/Users").json()["totalResults"] == 3
    assert scim.get("/Groups?excludedAttributes=members").json()["totalResults"] == 1

    assert scim.delete(f"/Users/{users[1]['id']}").status_code == 204
    assert scim.delete(f"/Groups/{group['id']}").status_code == 204

    body = scim.get("/Users").json()
    assert (body["totalResults"], _ids_of(body)) == (2, [users[0]["id"], users[2]["id"]])
    assert scim.get("/Groups?excludedAttributes=members").json()["totalResults"] == 0
    _assert_counts_exact(organization)


def _ids_of(body: dict) -> list[str]:
    return [resource["id"] for resource in body["Resources"]]


def test_deleting_an_organization_leaves_counts_that_fold_to_nothing(organization):
    for i in range(3):
        _user(organization, i)
    organization_id = organization.pk

    organization.delete()  # cascades to its records; the triggers append their -1s

    assert record_counts.counts_compact_all() >= 1
    assert not DirectoryRecordCount.objects.filter(organization_id=organization_id).exists()


# --- pages equal COUNT(*) + OFFSET -----------------------------------------------------------


@pytest.fixture
def scattered(organization, other_organization):
    """Users of one organization spread over several id blocks, between tombstones, groups
    and another organization's users in the same blocks."""
    block = RECORD_COUNT_BLOCK
    pks = [5, 6, block - 1, block, block + 1, 2 * block - 1, 2 * block, 4 * block + 3]
    pks += [4 * block + 4, 9 * block, 9 * block + 1]
    for i, pk in enumerate(pks):
        _user(organization, i, pk=pk)
    for i, pk in enumerate([7, block + 2, 4 * block + 5]):
        _group(organization, i, pk=pk)
        _user(other_organization, 100 + i, pk=pk + 50)
    tombstoned = [block, 2 * block - 1, 9 * block + 1]
    DirectoryRecord.objects.filter(pk__in=tombstoned).update(deleted_at=datetime.now(UTC))
    expected = list(
        queries.record_list(organization=organization, resource_type=USER).values_list(
            "scim_id", flat=True
        )
    )
    return [str(scim_id) for scim_id in expected]


def test_every_page_equals_offset_over_the_live_records(organization, scattered, rf, render):
    total = len(scattered)
    assert total == 8
    for start in range(1, total + 3):
        for count in (0, 1, 2, 3, total + 5):
            page = _page(organization, rf, start=start, count=count)
            assert (page.total, page.ids()) == (total, scattered[start - 1 : start - 1 + count]), (
                start,
                count,
            )


def _page(organization, rf, *, start: int, count: int) -> paging.Page:
    if paging.renders_in_database():
        return paging.rendered_page(
            organization_id=organization.pk,
            resource_type=USER,
            start=start,
            count=count,
            base_url="https://beem.example/scim/v2/1",
        )
    return paging.record_page(
        queries.record_list(organization=organization, resource_type=USER),
        organization_id=organization.pk,
        resource_type=USER,
        start=start,
        count=count,
        filtered=False,
    )


def test_pages_over_http_at_the_boundaries(scim, scattered, settings, render):
    settings.SCIM_SERVICE_PROVIDER = {**settings.SCIM_SERVICE_PROVIDER, "MAX_RESULTS": 5}

    beyond = scim.get("/Users", params={"startIndex": 50, "count": 3}).json()
    zero = scim.get("/Users", params={"startIndex": 4, "count": 0}).json()
    capped = scim.get("/Users", params={"startIndex": 2, "count": 1000}).json()
    below = scim.get("/Users", params={"startIndex": -3, "count": -1}).json()
    last = scim.get("/Users", params={"startIndex": 8, "count": 5}).json()

    assert beyond == {
        "schemas": [LIST_SCHEMA],
        "totalResults": 8,
        "itemsPerPage": 0,
        "startIndex": 50,
        "Resources": [],
    }
    assert (zero["totalResults"], zero["itemsPerPage"], zero["Resources"]) == (8, 0, [])
    assert (capped["itemsPerPage"], _ids_of(capped)) == (5, scattered[1:6])
    assert (below["startIndex"], below["itemsPerPage"], below["totalResults"]) == (1, 0, 8)
    assert (last["itemsPerPage"], _ids_of(last)) == (1, scattered[7:])


@pytest.mark.parametrize("start", [2**63 - 1, 2**64, 10**30])
def test_a_start_index_past_any_bigint_is_an_empty_page(scim, start, render):
    create_user(scim, mobile=None)

    for params in ({}, {"attributes": "userName"}, {"filter": 'displayName eq "Alice Wong"'}):
        response = scim.get("/Users", params={"startIndex": start, "count": 5, **params})

        body = response.json()
        assert response.status_code == 200, body
        assert (body["totalResults"], body["Resources"]) == (1, [])
        assert body["startIndex"] == paging.MAX_START_INDEX


def test_an_empty_directory_lists_nothing(scim, render):
    body = scim.get("/Users", params={"startIndex": 1, "count": 10}).json()

    assert (body["totalResults"], body["itemsPerPage"], body["Resources"]) == (0, 0, [])


# --- rendering -------------------------------------------------------------------------------


def test_rendered_resources_equal_what_get_answers(scim, organization):
    """The database renders what the adapters render (PostgreSQL; elsewhere both are the
    adapters): manager with its $ref, no manager, an empty extension, text outside ASCII and a
    timestamp on a whole second."""
    manager = create_user(scim, user_name="boss@contoso.com", external_id="boss", mobile=None)
    plain = create_user(
        scim, user_name="zoe@contoso.com", external_id="z", displayName='Zoë "Z" Ünal'
    )
    managed = create_user(
        scim,
        user_name="ann@contoso.com",
        external_id="ann",
        **{ENTERPRISE: {"department": "R&D", "manager": {"value": manager["id"]}}},
    )
    empty_extension = _user(organization, 99)
    DirectoryRecord.objects.filter(pk=empty_extension.pk).update(
        document={**_document(99), ENTERPRISE: {}},
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    odd_manager = _user(organization, 98)
    DirectoryRecord.objects.filter(pk=odd_manager.pk).update(
        document={
            **_document(98),
            ENTERPRISE: {"manager": {"displayName": "Boss", "value": manager["id"]}},
        }
    )
    null_extension = _user(organization, 97)
    DirectoryRecord.objects.filter(pk=null_extension.pk).update(
        document={**_document(97), ENTERPRISE: None}
    )
    group = create_group(scim, display_name="Ops <&> \u0627\u0644\u0641\u0631\u064a\u0642")

    listed = scim.get("/Users").json()["Resources"]
    groups = scim.get("/Groups", params={"excludedAttributes": "members"}).json()["Resources"]

    assert [r["id"] for r in listed] == [
        manager["id"],
        plain["id"],
        managed["id"],
        str(empty_extension.scim_id),
        str(odd_manager.scim_id),
        str(null_extension.scim_id),
    ]
    for resource in listed:
        answered = scim.get(f"/Users/{resource['id']}").json()
        # Same keys, values and key order.
        assert json.dumps(resource) == json.dumps(answered)
    assert listed[2][ENTERPRISE]["manager"]["$ref"].endswith(f"/Users/{manager['id']}")
    assert ENTERPRISE not in listed[3] and ENTERPRISE not in listed[5]
    assert listed[4][ENTERPRISE]["manager"] == {
        "value": manager["id"],
        "$ref": listed[2][ENTERPRISE]["manager"]["$ref"],
    }
    assert listed[3]["meta"]["created"] == "2026-01-02T03:04:05+00:00"
    answered = scim.get(f"/Groups/{group['id']}", params={"excludedAttributes": "members"})
    assert json.dumps(groups) == json.dumps([answered.json()])


def test_group_pages_with_members_still_list_them(scim):
    user = create_user(scim, mobile=None)
    group = create_group(scim)
    scim.patch(
        f"/Groups/{group['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": user["id"]}]}],
        },
    )

    resources = scim.get("/Groups").json()["Resources"]

    assert [m["value"] for m in resources[0]["members"]] == [user["id"]]


def test_projected_pages_keep_their_projection(scim, render):
    create_user(scim, mobile=None)

    only = scim.get("/Users", params={"attributes": "userName"}).json()["Resources"][0]
    without = scim.get("/Users", params={"excludedAttributes": "emails"}).json()["Resources"][0]

    assert set(only) == {"schemas", "id", "userName"}
    assert "emails" not in without and "userName" in without


# --- statements, memory, request log ---------------------------------------------------------


def _directory_statements(captured) -> list[str]:
    return [
        q["sql"] for q in captured.captured_queries if "directory_sync_directoryrecord" in q["sql"]
    ]


def test_a_list_page_is_one_statement_without_count_or_long_offset(scim, organization):
    for i in range(5):
        _user(organization, i)

    with CaptureQueriesContext(connection) as captured:
        response = scim.get("/Users", params={"startIndex": 3, "count": 2})

    assert response.json()["totalResults"] == 5
    statements = _directory_statements(captured)
    # PostgreSQL: counts, page and rendering in one statement; elsewhere the counts, then the
    # page of records.
    assert len(statements) == (1 if connection.vendor == "postgresql" else 2)
    assert not any("__count" in sql for sql in statements)


def test_a_lookup_that_ends_the_list_needs_no_count(scim):
    user = create_user(scim, mobile=None)
    lookup = f'userName eq "{user["userName"]}"'

    with CaptureQueriesContext(connection) as short:
        found = scim.get("/Users", params={"filter": lookup}).json()
    with CaptureQueriesContext(connection) as full:
        exactly = scim.get("/Users", params={"filter": lookup, "count": 1}).json()
    with CaptureQueriesContext(connection) as after:
        beyond = scim.get("/Users", params={"filter": lookup, "startIndex": 2}).json()

    assert (found["totalResults"], exactly["totalResults"], beyond["totalResults"]) == (1, 1, 1)
    assert (len(found["Resources"]), len(exactly["Resources"]), beyond["Resources"]) == (1, 1, [])
    counts = [
        sum("COUNT(*)" in sql for sql in _directory_statements(c)) for c in (short, full, after)
    ]
    # A one-term lookup (views._ResourceView._lookup) reads one row more than the page:
    # fewer rows back tells the total, full or empty page alike (test_read_path.py counts
    # when more rows match than that).
    assert counts == [0, 0, 0]


def _peak_of_a_page(scim) -> int:
    scim.get("/Users", params={"startIndex": 2, "count": 100})  # warm caches and imports
    tracemalloc.start()
    try:
        response = scim.get("/Users", params={"startIndex": 7, "count": 100})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.json()["itemsPerPage"] == 100
    return peak


def test_page_memory_does_not_grow_with_the_directory(scim, organization, render):
    DirectoryRecord.objects.bulk_create(
        DirectoryRecord(organization=organization, resource_type=USER, document=_document(i))
        for i in range(200)
    )
    small = _peak_of_a_page(scim)
    DirectoryRecord.objects.bulk_create(
        DirectoryRecord(organization=organization, resource_type=USER, document=_document(i))
        for i in range(200, 4000)
    )
    large = _peak_of_a_page(scim)

    # Twenty times the directory, the same page: at most a few KB more (allocator noise).
    assert large < small * 1.2 + 20_000, (small, large)


def test_list_responses_are_logged_as_a_summary_with_ids(scim, organization, render):
    users = [
        create_user(scim, user_name=f"u{i}@contoso.com", external_id=f"o{i}", mobile=None)
        for i in range(3)
    ]

    scim.get("/Users", params={"startIndex": 2, "count": 5})

    log = RequestLog.objects.order_by("-id").first()
    assert json.loads(log.response_body) == {
        "schemas": [LIST_SCHEMA],
        "totalResults": 3,
        "itemsPerPage": 2,
        "startIndex": 2,
        "Resources": [{"id": users[1]["id"]}, {"id": users[2]["id"]}],
    }
    assert "contoso" not in log.response_body


# --- concurrency (PostgreSQL) ----------------------------------------------------------------


def _in_threads(calls) -> None:
    barrier = threading.Barrier(len(calls))
    errors = []

    def run(call) -> None:
        barrier.wait()
        try:
            call()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_deletes_and_folds_keep_the_total_exact(require_postgres, scim):
    organization = scim.organization
    doomed = [
        create_user(scim, user_name=f"d{i}@contoso.com", external_id=f"d{i}", mobile=None)["id"]
        for i in range(4)
    ]

    def creator(worker: int):
        def call():
            for i in range(6):
                response = scim.post(
                    "/Users",
                    json={
                        "schemas": [USER_SCHEMA],
                        "userName": f"w{worker}-{i}@contoso.com",
                        "externalId": str(uuid.uuid4()),
                        "emails": [{"type": "work", "value": f"w{worker}-{i}@contoso.com"}],
                    },
                )
                assert response.status_code == 201, response.content

        return call

    def deleter():
        for scim_id in doomed:
            assert scim.delete(f"/Users/{scim_id}").status_code == 204

    def folder():
        for _ in range(10):
            record_counts.counts_compact(organization_id=organization.pk, resource_type=USER)

    def lister():
        for _ in range(5):
            body = scim.get("/Users", params={"count": 200}).json()
            assert body["totalResults"] == body["itemsPerPage"]

    _in_threads([creator(0), creator(1), creator(2), deleter, folder, lister])

    assert _counted(organization) == _live(organization) == 18
    assert scim.get("/Users").json()["totalResults"] == 18
    _assert_counts_exact(organization)
