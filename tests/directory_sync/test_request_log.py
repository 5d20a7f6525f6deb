"""The SCIM request log: what Entra sent and got, without personal data or secrets."""

import io
import json

import pytest
from django.core.management import call_command

from directory_sync.models import RequestLog
from directory_sync.scim.request_log import MASK, mask_body, mask_query

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
EMAIL = "grace.hopper@acme.example"
PHONE = "+966512345678"
EXTERNAL_ID = "8d0e1f2a-3b4c-4d5e-8f60-718293a4b5c6"
PERSONAL = [EMAIL, PHONE, "Grace", "Hopper", "Grace Hopper", "E-1906", "Arlington, VA"]


def _user() -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": EXTERNAL_ID,
        "userName": EMAIL,
        "active": True,
        "displayName": "Grace Hopper",
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [{"type": "work", "value": EMAIL, "primary": True}],
        "phoneNumbers": [{"type": "mobile", "value": PHONE}],
        "title": "Rear Admiral",
        "addresses": [{"type": "work", "country": "US", "locality": "Arlington, VA"}],
        ENTERPRISE: {"employeeNumber": "E-1906", "department": "Navy"},
    }


def _dump_database() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def test_create_is_logged_with_personal_data_masked(scim, organization):
    response = scim.post("/Users", json=_user())
    assert response.status_code == 201, response.content
    scim_id = response.json()["id"]

    log = RequestLog.objects.get()
    assert (log.organization, log.method, log.status) == (organization, "POST", 201)
    assert log.path == f"/scim/v2/{organization.pk}/Users"
    assert log.duration_ms > 0
    assert log.run == response.wsgi_request.scim_run
    assert log.request_id == response.wsgi_request.request_id
    stored = log.request_body + log.response_body
    for value in PERSONAL:
        assert value not in stored, value
    request_body = json.loads(log.request_body)
    assert request_body == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": EXTERNAL_ID,
        "userName": MASK,
        "active": True,
        "displayName": MASK,
        "name": {"givenName": MASK, "familyName": MASK},
        "emails": [{"type": "work", "value": MASK, "primary": True}],
        "phoneNumbers": [{"type": "mobile", "value": MASK}],
        "title": "Rear Admiral",
        "addresses": [{"type": "work", "country": MASK, "locality": MASK}],
        ENTERPRISE: {"employeeNumber": MASK, "department": "Navy"},
    }
    response_body = json.loads(log.response_body)
    assert response_body["id"] == scim_id
    assert response_body["userName"] == MASK


def test_authorization_header_and_secrets_are_nowhere_in_the_database(scim, credentials):
    scim.post("/Users", json=_user())
    scim.get(f'/Users?filter=userName+eq+"{EMAIL}"')
    scim.with_token("typo-" + scim.token[:8]).get("/Users")
    assert RequestLog.objects.count() == 3

    dump = _dump_database()

    assert scim.token not in dump
    assert scim.token[:8] not in dump
    assert credentials.client_secret not in dump
    for log in RequestLog.objects.all():
        for text in (log.query, log.request_body, log.response_body, log.path):
            assert EMAIL not in text
            assert PHONE not in text


def test_filter_values_are_masked_but_ids_kept(scim):
    scim.get(f'/Users?filter=userName+eq+"{EMAIL}"')
    scim.get(f'/Users?filter=externalId+eq+"{EXTERNAL_ID}"')
    scim.get('/Users?filter=emails[type+eq+"work"].value+eq+"Grace@Acme.example"&count=5')

    queries = list(RequestLog.objects.order_by("id").values_list("query", flat=True))
    assert queries == [
        f'filter=userName eq "{MASK}"',
        f'filter=externalId eq "{EXTERNAL_ID}"',
        f'filter=emails[type eq "work"].value eq "{MASK}"&count=5',
    ]


def test_patch_operation_values_are_masked_but_ops_and_paths_kept(scim):
    created = scim.post("/Users", json=_user()).json()
    manager = scim.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "boss@acme.example",
            "phoneNumbers": [{"type": "mobile", "value": "+966512345679"}],
            "active": True,
        },
    ).json()
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "displayName", "value": "Grace B. Hopper"},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": EMAIL},
            {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": PHONE},
            {"op": "Replace", "path": "name.familyName", "value": "Hopper"},
            {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "E-1906"},
            {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": manager["id"]},
            {"op": "Replace", "path": "active", "value": "False"},
            {
                "op": "replace",
                "value": {
                    "name.givenName": "Grace",
                    f"{ENTERPRISE}:employeeNumber": "E-1906",
                    "title": "Rear Admiral",
                },
            },
        ],
    }

    response = scim.patch(f"/Users/{created['id']}", json=patch)

    assert response.status_code in (200, 204), response.content
    log = RequestLog.objects.filter(method="PATCH").get()
    assert json.loads(log.request_body) == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "displayName", "value": MASK},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": MASK},
            {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": MASK},
            {"op": "Replace", "path": "name.familyName", "value": MASK},
            {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": MASK},
            {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": manager["id"]},
            {"op": "Replace", "path": "active", "value": "False"},
            {
                "op": "replace",
                "value": {
                    "name.givenName": MASK,
                    f"{ENTERPRISE}:employeeNumber": MASK,
                    "title": "Rear Admiral",
                },
            },
        ],
    }
    for value in PERSONAL:
        assert value not in log.response_body


def test_group_names_stay_readable_and_member_ids_kept(scim):
    user = scim.post("/Users", json=_user()).json()
    group = scim.post(
        "/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Engineering",
            "externalId": "c2a1b0d9-8e7f-4a6b-9c5d-4e3f2a1b0c9d",
        },
    ).json()
    scim.patch(
        f"/Groups/{group['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Add", "path": "members", "value": [{"$ref": None, "value": user["id"]}]}
            ],
        },
    )

    post_log, patch_log = RequestLog.objects.filter(path__contains="/Groups").order_by("id")
    assert json.loads(post_log.request_body)["displayName"] == "Engineering"
    assert json.loads(post_log.response_body)["displayName"] == "Engineering"
    assert json.loads(patch_log.request_body)["Operations"] == [
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": user["id"]}]}
    ]


def test_secret_fields_are_masked():
    body = json.dumps({"password": "hunter2", "client_secret": "s3cr3t", "x": {"token": "t"}})

    assert json.loads(mask_body(body)) == {
        "password": MASK,
        "client_secret": MASK,
        "x": {"token": MASK},
    }


def test_error_details_have_emails_and_phone_numbers_scrubbed():
    body = json.dumps(
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "409",
            "scimType": "uniqueness",
            "detail": f"userName {EMAIL} is taken; mobile {PHONE} or +966 51 234 5678 too",
        }
    )

    masked = json.loads(mask_body(body))

    assert masked["detail"] == f"userName {MASK} is taken; mobile {MASK} or {MASK} too"
    assert masked["scimType"] == "uniqueness"


def test_malformed_json_keeps_keys_and_masks_strings():
    masked = mask_body('{"userName": "grace@acme.example", "active": tru')

    assert masked == f'{{"userName": "{MASK}", "active": tru'


def test_long_bodies_are_truncated():
    body = json.dumps({"schemas": ["x"], "title": "t" * 40_000})

    masked = mask_body(body)

    assert len(masked) < 16 * 1024 + 100
    assert masked.endswith("characters in all]")


def test_query_secrets_are_masked():
    assert mask_query("access_token=abc&count=5") == f"access_token={MASK}&count=5"


@pytest.mark.parametrize(
    ("mode", "logged"),
    [
        ("all", ["GET 200", "POST 201", "GET 404", "GET 401"]),
        ("writes", ["POST 201", "GET 404", "GET 401"]),
        ("errors", ["GET 404", "GET 401"]),
        ("off", []),
    ],
)
def test_log_mode_chooses_what_is_kept(scim, settings, mode, logged):
    settings.BEEM_REQUEST_LOG = mode

    assert scim.get("/Users").status_code == 200
    assert scim.post("/Users", json=_user()).status_code == 201
    assert scim.get("/Users/00000000-0000-0000-0000-000000000000").status_code == 404
    assert scim.with_token("nope").get("/Users").status_code == 401

    rows = RequestLog.objects.order_by("id").values_list("method", "status")
    assert [f"{method} {status}" for method, status in rows] == logged


def test_hostile_nesting_is_stored_without_failing():
    masked = mask_body("[" * 50_000 + "]" * 50_000)

    assert masked.startswith("[[[")
    assert len(masked) < 16 * 1024 + 100


def test_nul_characters_are_stored_on_every_database(scim):
    response = scim.get("/Users", params={"filter": 'userName eq "a\x00b"'})

    assert response.status_code in (200, 400)
    assert "\x00" not in RequestLog.objects.get().query


# --- buffered rows of reads (BEEM_REQUEST_LOG_FLUSH_SECONDS > 0) ------------------------------


@pytest.fixture
def buffered(settings, monkeypatch):
    from directory_sync.scim import request_log

    settings.BEEM_REQUEST_LOG_FLUSH_SECONDS = 60
    # The background flusher writes on its own connection, which cannot see this test's
    # uncommitted rows: flush by hand here.
    monkeypatch.setattr(request_log, "BACKGROUND_FLUSH", False)
    request_log.request_log_buffer_discard()
    yield request_log
    request_log.request_log_buffer_discard()


def test_reads_are_buffered_then_written_in_bulk_and_masked(scim, organization, buffered):
    created = scim.post("/Users", json=_user())
    scim_id = created.json()["id"]
    assert list(RequestLog.objects.values_list("method", flat=True)) == ["POST"]

    get = scim.get(f"/Users/{scim_id}")
    lookup = scim.get("/Users", params={"filter": f'userName eq "{EMAIL}"'})
    missing = scim.get("/Users/6d8e2c1a-4b3f-4e5d-9a7b-1c2d3e4f5a6b")
    assert (get.status_code, lookup.status_code, missing.status_code) == (200, 200, 404)
    # Writes are written before their response, reads wait in the buffer.
    assert RequestLog.objects.count() == 1

    assert buffered.request_log_flush() == 3

    rows = list(RequestLog.objects.filter(method="GET").order_by("id"))
    assert [r.status for r in rows] == [200, 200, 404]
    assert [r.request_id for r in rows] == [
        get.wsgi_request.request_id,
        lookup.wsgi_request.request_id,
        missing.wsgi_request.request_id,
    ]
    assert all(r.run == get.wsgi_request.scim_run and r.organization == organization for r in rows)
    assert rows[0].created_at <= rows[1].created_at <= rows[2].created_at
    assert rows[1].query == f'filter=userName eq "{MASK}"'
    for row in rows:
        stored = row.query + row.request_body + row.response_body
        for value in PERSONAL:
            assert value not in stored, value
    body = json.loads(rows[0].response_body)
    assert body["id"] == scim_id
    assert body["userName"] == MASK
    assert body["externalId"] == EXTERNAL_ID
    assert buffered.request_log_flush() == 0


def test_buffered_rows_are_flushed_at_the_end_of_a_request_once_due(
    scim, organization, buffered, settings
):
    scim.get("/Users")
    assert RequestLog.objects.count() == 0

    settings.BEEM_REQUEST_LOG_FLUSH_SECONDS = 0.001
    scim.get("/Users")  # flushed when its response is closed (request_finished)

    assert RequestLog.objects.count() == 2


def test_buffering_keeps_the_log_mode(scim, organization, buffered, settings):
    settings.BEEM_REQUEST_LOG = "writes"
    scim.get("/Users")
    scim.get("/Users/not-a-uuid")

    buffered.request_log_flush()

    assert list(RequestLog.objects.values_list("status", flat=True)) == [404]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_that_cannot_be_written_does_not_lose_the_others(
    require_postgres, scim, organization, buffered
):
    # Committed for real: foreign keys are checked at commit (deferred constraints).
    scim.get("/Users")
    scim.get("/Users")
    # As if the first row's run had vanished: its insert fails, the second still lands.
    with buffered._buffer_lock:
        row = list(buffered._buffer[0])
        row[buffered._COLUMNS.index("run_id")] = 2**31 - 1
        buffered._buffer[0] = tuple(row)

    assert buffered.request_log_flush() == 1
    assert RequestLog.objects.count() == 1
