"""The SCIM request log: what Entra sent and got, without personal data or secrets."""

import io
import json
import logging
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.db import connection
from django.http import HttpResponse
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from directory_sync.models import ChangeEvent, DirectoryRecord, RequestLog
from directory_sync.scim import request_log
from directory_sync.scim.request_log import MASK, mask_body, mask_filter, mask_query

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
    assert RequestLog.objects.count() == 2  # the 401 is counted in metrics, not logged

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
        ("all", ["GET 200", "POST 201", "GET 404"]),
        ("writes", ["POST 201", "GET 404"]),
        ("errors", ["GET 404"]),
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


# --- buffered rows (BEEM_REQUEST_LOG_FLUSH_SECONDS > 0) -----------------------------------------


@pytest.fixture
def buffered(settings, monkeypatch):
    from directory_sync.scim import request_log

    settings.BEEM_REQUEST_LOG_FLUSH_SECONDS = 60
    # The background flusher writes on its own connection, which cannot see this test's
    # uncommitted rows: flush by hand here.
    monkeypatch.setattr("directory_sync.flusher.BACKGROUND_FLUSH", False)
    request_log.request_log_buffer_discard()
    yield request_log
    request_log.request_log_buffer_discard()


def test_rows_are_buffered_then_written_in_bulk_and_masked(scim, organization, buffered):
    created = scim.post("/Users", json=_user())
    scim_id = created.json()["id"]

    get = scim.get(f"/Users/{scim_id}")
    lookup = scim.get("/Users", params={"filter": f'userName eq "{EMAIL}"'})
    missing = scim.get("/Users/6d8e2c1a-4b3f-4e5d-9a7b-1c2d3e4f5a6b")
    assert (get.status_code, lookup.status_code, missing.status_code) == (200, 200, 404)
    # Writes and reads alike wait in the buffer: no log row inside a write's transaction.
    assert RequestLog.objects.count() == 0

    assert buffered.request_log_flush() == 4
    assert RequestLog.objects.get(method="POST").status == 201

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


# --- the log can neither fail nor undo the request it records (issue 12) --------------------


def _failures(stage: str) -> float:
    return REGISTRY.get_sample_value("beem_request_log_failures_total", {"stage": stage}) or 0.0


@contextmanager
def _failing_trigger(table: str, trigger: str):
    """A trigger that makes PostgreSQL refuse every new row of ``table``: a real database
    error, not a mock of our code. ``trigger``: what follows CREATE, up to FOR EACH ROW, with
    ``{table}`` for the table (a deferred CONSTRAINT TRIGGER fails at COMMIT)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION beem_test_fail() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'row refused by a test trigger'; END $$"
        )
        cursor.execute(
            f"CREATE {trigger.replace('{table}', table)} "
            "FOR EACH ROW EXECUTE FUNCTION beem_test_fail()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER beem_test_fail ON {table}")
            cursor.execute("DROP FUNCTION beem_test_fail()")


@pytest.fixture
def log_refused_by_the_database():
    with _failing_trigger(
        RequestLog._meta.db_table, "TRIGGER beem_test_fail BEFORE INSERT ON {table}"
    ):
        yield


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_log_row_the_database_refuses_leaves_the_write_committed_and_is_counted(
    require_postgres, scim, log_refused_by_the_database, caplog
):
    before = _failures("write")

    response = scim.post("/Users", json=_user())

    # Committed for real (no test transaction around it): the write stands, the log row not.
    assert response.status_code == 201, response.content
    record = DirectoryRecord.objects.get(scim_id=response.json()["id"])
    assert list(ChangeEvent.objects.filter(record=record).values_list("kind", flat=True)) == [
        "created"
    ]
    assert scim.get(f"/Users/{record.scim_id}").status_code == 200
    assert RequestLog.objects.count() == 0
    assert _failures("write") >= before + 1
    assert any(
        r.levelno >= logging.WARNING and "request log" in r.getMessage() for r in caplog.records
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lone_surrogate_in_a_write_neither_undoes_it_nor_loses_its_log_row(
    require_postgres, scim
):
    # "\ud800" in an attribute Beem does not map: json.loads makes it a lone surrogate, which
    # used to make the log row unencodable inside the write's transaction; the write then
    # answered 201 and was silently rolled back at COMMIT.
    body = _user()
    body["preferredLanguage"] = "\ud800"

    response = scim.post("/Users", json=body)

    assert response.status_code in (201, 400), response.content
    if response.status_code == 201:
        scim_id = response.json()["id"]
        assert DirectoryRecord.objects.filter(scim_id=scim_id).exists()
        assert ChangeEvent.objects.filter(record__scim_id=scim_id).count() == 1
        assert scim.get(f"/Users/{scim_id}").status_code == 200
    else:
        assert not DirectoryRecord.objects.exists()
    log = RequestLog.objects.get(method="POST")
    assert log.status == response.status_code
    assert json.loads(log.request_body)["preferredLanguage"] == "\ufffd"


def test_every_text_the_log_stores_is_storable(rf, organization):
    request = rf.post(
        "/scim/v2/1/Users\x00",
        data=b'{"title": "a\\u0000b\\ud800c", "bad": "\\udfff"}',
        content_type="application/scim+json",
        QUERY_STRING="filter=title+eq+%22%00%22&x=%ED%A0%80",
    )
    request.request_id = "id\x00\ud800"
    response = HttpResponse('{"detail": "\\ud800"}', status=400)

    values = request_log._row_values(
        organization=organization, run=None, request=request, response=response, duration_ms=1
    )

    for column, value in values.items():
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogate
            assert "\x00" not in value, column
    # NUL stays a JSON escape in the body's text; the surrogate could not be stored at all.
    assert json.loads(values["request_body"])["title"] == "a\x00b\ufffdc"


# --- requests that did not authenticate (issue 13) ------------------------------------------


def _unauthenticated(reason: str) -> float:
    labels = {"reason": reason}
    return REGISTRY.get_sample_value("beem_scim_unauthenticated_requests_total", labels) or 0.0


def test_unauthenticated_requests_are_counted_not_logged(scim, other_org_scim):
    big = {**_user(), "junk": "A" * 15_000}
    before = {r: _unauthenticated(r) for r in ("missing_token", "invalid_token", "wrong_tenant")}

    assert scim.with_token(None).post("/Users", json=big).status_code == 401
    assert scim.with_token("guessed-token").post("/Users", json=big).status_code == 401
    assert scim.with_token(other_org_scim.token).patch("/Users/x", json=big).status_code == 401

    assert RequestLog.objects.count() == 0
    assert _unauthenticated("missing_token") == before["missing_token"] + 1
    assert _unauthenticated("invalid_token") == before["invalid_token"] + 1
    assert _unauthenticated("wrong_tenant") == before["wrong_tenant"] + 1


def test_a_stopped_syncs_own_token_is_logged_without_its_body(scim, organization):
    from directory_sync import services

    services.sync_stop(organization=organization, actor_label="operator")
    before = _unauthenticated("sync_inactive")

    response = scim.post("/Users", json=_user())

    assert response.status_code == 401
    log = RequestLog.objects.get()
    assert (log.organization, log.method, log.status, log.run) == (organization, "POST", 401, None)
    assert log.request_body == ""
    assert "not active" in json.loads(log.response_body)["detail"]
    assert _unauthenticated("sync_inactive") == before + 1


# --- filters and value-filter paths are masked in every form (issue 13) ---------------------


@pytest.mark.parametrize(
    "query, logged",
    [
        # unquoted, as a careless client (or an attacker) sends it
        (f"filter=userName+eq+{EMAIL}", f"filter=userName eq {MASK}"),
        # URL-encoded twice: the value is still encoded after decoding once
        (
            "filter=" + quote(f"userName eq {quote(chr(34) + EMAIL + chr(34))}"),
            f"filter=userName eq {MASK}",
        ),
        # nested and/or, value filters, ids kept
        (
            "filter="
            + quote(
                f'(userName eq "{EMAIL}" or emails[type eq "work" and value co "grace"]) '
                f'and externalId eq "{EXTERNAL_ID}"'
            ),
            f'filter=(userName eq "{MASK}" or emails[type eq "work" and value co "{MASK}"]) '
            f'and externalId eq "{EXTERNAL_ID}"',
        ),
        (
            "filter=" + quote(f'phoneNumbers[value eq "{PHONE}"]'),
            f'filter=phoneNumbers[value eq "{MASK}"]',
        ),
        (
            "filter=" + quote('userName sw "grace" and name.familyName ne "Hopper"'),
            f'filter=userName sw "{MASK}" and name.familyName ne "{MASK}"',
        ),
    ],
)
def test_filter_values_are_masked_in_every_form(scim, query, logged):
    scim.get(f"/Users?{query}")

    stored = RequestLog.objects.get().query
    assert stored == logged
    for value in PERSONAL + ["grace"]:
        assert value not in stored


def test_value_filter_paths_in_patch_operations_are_masked(scim):
    created = scim.post("/Users", json=_user()).json()
    operations = [
        {"op": "Remove", "path": f'emails[value eq "{EMAIL}"]'},
        {"op": "Remove", "path": f'emails[type eq "work" and value eq "{EMAIL}"]'},
        {"op": "Replace", "path": f'phoneNumbers[value eq "{PHONE}"].value', "value": PHONE},
        {"op": "Remove", "path": f"emails[value eq {EMAIL}]"},
    ]

    scim.patch(
        f"/Users/{created['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations,
        },
    )

    log = RequestLog.objects.get(method="PATCH")
    assert [op["path"] for op in json.loads(log.request_body)["Operations"]] == [
        f'emails[value eq "{MASK}"]',
        f'emails[type eq "work" and value eq "{MASK}"]',
        f'phoneNumbers[value eq "{MASK}"].value',
        f"emails[value eq {MASK}",
    ]
    for value in PERSONAL:
        assert value not in log.request_body


def test_a_search_request_body_has_its_filter_masked(scim, caplog):
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": f'userName eq "{EMAIL}"',
    }

    response = scim.post("/.search", json=body)

    assert response.status_code == 200
    log = RequestLog.objects.get()
    assert json.loads(log.request_body)["filter"] == f'userName eq "{MASK}"'
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records


@given(
    prefix=st.text(max_size=40),
    suffix=st.text(max_size=40),
    quote_mark=st.sampled_from(['"', "", "%22", "'"]),
)
@hypothesis_settings(max_examples=300, deadline=None)
def test_mask_filter_never_raises_and_never_keeps_a_compared_value(prefix, suffix, quote_mark):
    text = f"{prefix} userName eq {quote_mark}grace@acme.example{quote_mark}{suffix}"

    assert "grace@acme.example" not in mask_filter(text)


@given(st.text(max_size=200))
@hypothesis_settings(max_examples=300, deadline=None)
def test_mask_filter_never_raises_on_any_text(text):
    assert isinstance(mask_filter(text), str)


@pytest.fixture
def commit_refused_by_the_database():
    """Every new directory record fails at COMMIT: the view answered, then the write's
    transaction could not commit."""
    with _failing_trigger(
        DirectoryRecord._meta.db_table,
        "CONSTRAINT TRIGGER beem_test_fail AFTER INSERT ON {table} DEFERRABLE INITIALLY DEFERRED",
    ):
        yield


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_write_whose_commit_fails_is_logged_once_with_the_answer_entra_got(
    require_postgres, scim, commit_refused_by_the_database
):
    # The run is opened (and committed) by the probe, so only the write's COMMIT fails.
    probe = scim.get('/Users?filter=userName+eq+"6f1d0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"')
    assert probe.status_code == 200
    response = scim.post("/Users", json=_user())

    assert response.status_code == 500
    assert not DirectoryRecord.objects.exists()
    assert list(RequestLog.objects.filter(method="POST").values_list("status", flat=True)) == [500]


def test_the_guidance_example_number_is_kept_but_the_sent_number_is_masked():
    """Issue 18: "use the international format, e.g. ***" hid the guidance."""
    body = json.dumps(
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "400",
            "scimType": "invalidValue",
            "detail": "mobile '0500000001' is not a valid mobile number. Use the international "
            "format with the country code, e.g. +966512345678. Not +966512345678 alone.",
        }
    )

    detail = json.loads(mask_body(body))["detail"]

    assert detail == (
        f"mobile '{MASK}' is not a valid mobile number. Use the international format with the "
        f"country code, e.g. +966512345678. Not {MASK} alone."
    )
