"""The hot read path stays cheap: statements per warm request are pinned, so a change that
adds a query to Entra's per-user traffic fails here (bench/RESULTS.md has the CPU figures).

"Warm": the token lookup is cached (1 s), last_request_at was written moments ago, run counts
and read log rows are batched (flushed later, in bulk).
"""

import uuid

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from directory_sync.models import DirectoryRecord, ProvisioningRun
from directory_sync.scim import request_log

from .conftest import create_group, create_user

PROBE = 'userName eq "{}"'


@pytest.fixture
def batched(settings, monkeypatch):
    settings.BEEM_REQUEST_LOG_FLUSH_SECONDS = 60
    settings.BEEM_RUN_COUNT_FLUSH_SECONDS = 60
    monkeypatch.setattr("directory_sync.flusher.BACKGROUND_FLUSH", False)
    request_log.request_log_buffer_discard()
    yield
    request_log.request_log_buffer_discard()


def _statements(call) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    return response, [query["sql"] for query in captured.captured_queries]


def _assert_statements(sql: list[str], expected: int) -> None:
    """The pins are PostgreSQL's hot path (CI runs them there); the embedded SQLite default
    answers the same through the ORM in a few more statements."""
    if connection.vendor == "postgresql":
        assert len(sql) == expected, sql


@pytest.fixture
def warm(scim, batched):
    user = create_user(scim)
    group = create_group(scim, display_name="Sales")
    response = scim.patch(
        f"/Groups/{group['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}],
        },
    )
    assert response.status_code == 204, response.content
    scim.get("/Users")  # token cached, run open, last_request_at written
    return user, group


def test_warm_get_user_is_one_statement(scim, warm):
    user, _group = warm
    response, sql = _statements(lambda: scim.get(f"/Users/{user['id']}"))

    assert response.status_code == 200
    assert response.json()["id"] == user["id"]
    # The record and the open provisioning run, in one round trip.
    _assert_statements(sql, 1)
    if connection.vendor == "postgresql":
        assert "directory_sync_provisioningrun" in sql[0]


@pytest.mark.parametrize("attribute", ["userName", "externalId"])
def test_warm_lookup_is_one_statement(scim, warm, attribute):
    user, _group = warm
    value = user[attribute]
    response, sql = _statements(
        lambda: scim.get("/Users", params={"filter": f'{attribute} eq "{value}"'})
    )

    body = response.json()
    assert (body["totalResults"], body["Resources"][0]["id"]) == (1, user["id"])
    _assert_statements(sql, 1)
    assert "COUNT" not in " ".join(sql).upper()


def test_warm_get_group_with_members_is_one_statement(scim, warm):
    user, group = warm
    response, sql = _statements(lambda: scim.get(f"/Groups/{group['id']}"))

    assert [m["value"] for m in response.json()["members"]] == [user["id"]]
    _assert_statements(sql, 1)


def test_warm_group_lookup_without_members_is_one_statement(scim, warm):
    _user, group = warm
    response, sql = _statements(
        lambda: scim.get(
            "/Groups",
            params={"excludedAttributes": "members", "filter": 'displayName eq "sales"'},
        )
    )

    body = response.json()
    assert (body["totalResults"], body["Resources"][0]["id"]) == (1, group["id"])
    assert "members" not in body["Resources"][0]
    _assert_statements(sql, 1)


def test_warm_probe_is_one_statement(scim, warm, settings):
    settings.BEEM_PROBE_COALESCE_SECONDS = 5
    scim.get("/Users", params={"filter": PROBE.format(uuid.uuid4())})  # opens the probe run

    response, sql = _statements(
        lambda: scim.get("/Users", params={"filter": PROBE.format(uuid.uuid4())})
    )

    assert response.json()["totalResults"] == 0
    _assert_statements(sql, 1)
    assert ProvisioningRun.objects.filter(trigger="probe").count() == 1


def test_lookup_totals_count_only_when_the_page_is_full(scim, warm):
    _user, group = warm
    create_group(scim, display_name="SALES")  # displayName is not unique
    scim.get("/Users")

    response, sql = _statements(
        lambda: scim.get("/Groups", params={"filter": 'displayName eq "Sales"', "count": 1})
    )

    body = response.json()
    assert (body["totalResults"], body["itemsPerPage"]) == (2, 1)
    assert body["Resources"][0]["id"] == group["id"]
    _assert_statements(sql, 2)  # the run with the page (+1 row), the COUNT

    second = scim.get(
        "/Groups", params={"filter": 'displayName eq "Sales"', "count": 1, "startIndex": 2}
    ).json()
    assert (second["totalResults"], second["startIndex"], len(second["Resources"])) == (2, 2, 1)
    assert second["Resources"][0]["id"] != group["id"]
    none = scim.get("/Groups", params={"filter": 'displayName eq "Sales"', "count": 0}).json()
    assert (none["totalResults"], none["Resources"]) == (2, [])


def test_lookup_renders_like_the_adapter(scim, warm):
    """The row renderer and the adapter (used by writes) give the same resource."""
    user, _group = warm
    via_get = scim.get(f"/Users/{user['id']}").json()
    via_lookup = scim.get(
        "/Users", params={"filter": f'externalId eq "{user["externalId"]}"'}
    ).json()["Resources"][0]

    assert via_get == via_lookup == user


def test_deleted_and_foreign_records_are_not_found(scim, warm, other_org_scim):
    user, _group = warm
    assert other_org_scim.get(f"/Users/{user['id']}").status_code == 404
    found = other_org_scim.get("/Users", params={"filter": f'userName eq "{user["userName"]}"'})
    assert found.json()["totalResults"] == 0
    DirectoryRecord.objects.filter(scim_id=user["id"]).update(deleted_at="2020-01-01T00:00:00Z")
    assert scim.get(f"/Users/{user['id']}").status_code == 404
    assert scim.get("/Users/not-a-uuid").status_code == 404
    assert scim.get("/Users", params={"filter": 'id eq "nope"'}).json()["totalResults"] == 0


def test_connection_health_check_is_skipped_when_it_just_answered(scim, warm, monkeypatch):
    """CONN_HEALTH_CHECKS' SELECT 1 runs for a connection left idle, not for one that
    answered the previous SCIM request moments ago."""
    from directory_sync.scim import auth_middleware

    user, _group = warm
    checks = []
    wrapper = connections["default"]
    real = wrapper.is_usable
    enabled = wrapper.health_check_enabled
    wrapper.is_usable = lambda: checks.append(1) or real()
    wrapper.health_check_enabled = True
    try:
        wrapper.health_check_done = False  # what request_started does between requests
        assert scim.get(f"/Users/{user['id']}").status_code == 200
        assert checks == []

        monkeypatch.setattr(auth_middleware, "HEALTH_CHECK_SKIP_SECONDS", 0)
        wrapper.health_check_done = False
        assert scim.get(f"/Users/{user['id']}").status_code == 200
        assert checks == [1]
    finally:
        del wrapper.is_usable
        wrapper.health_check_enabled = enabled
        wrapper.health_check_done = True


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_hot_reads_are_planned_once_per_connection(scim, warm):
    """PostgreSQL prepares a lookup the first time a connection runs it and reuses it after;
    the connection's other queries stay unprepared (Django's default)."""
    user, _group = warm
    assert scim.get(f"/Users/{user['id']}").status_code == 200
    if connection.vendor != "postgresql":
        return
    prepared = _prepared_statements()
    assert any("r.scim_id = $" in statement for statement in prepared), prepared
    for _ in range(3):
        assert scim.get(f"/Users/{user['id']}").status_code == 200
    assert _prepared_statements() == prepared
    assert connection.connection.prepare_threshold is None


def test_reads_answer_the_same_without_prepared_statements(scim, warm, settings):
    user, _group = warm
    lookup = {"filter": f'userName eq "{user["userName"]}"'}
    prepared = (scim.get(f"/Users/{user['id']}").json(), scim.get("/Users", params=lookup).json())
    settings.BEEM_PREPARED_STATEMENTS = False
    plain = (scim.get(f"/Users/{user['id']}").json(), scim.get("/Users", params=lookup).json())
    assert plain == prepared
    assert prepared[0]["id"] == user["id"]
    assert prepared[1]["totalResults"] == 1
