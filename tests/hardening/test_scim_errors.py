"""Every error under /scim/ is a SCIM error body (RFC 7644 §3.12) with application/scim+json, in
DEBUG and outside it; a SCIM request stuck on the database is answered 503 with Retry-After
once BEEM_SCIM_STATEMENT_TIMEOUT_MS / BEEM_SCIM_LOCK_TIMEOUT_MS pass (real PostgreSQL locks
held by another connection)."""

import logging

import psycopg
import pytest
from django.db import close_old_connections, connection, transaction
from django.http import HttpResponse

from directory_sync.models import DirectoryRecord, RequestLog
from directory_sync.scim import middleware

from .conftest import ERROR_SCHEMA, PATCH_SCHEMA, SCIM_CONTENT_TYPE, scim_user


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory(slug="acme-errors", name="Acme")


@pytest.fixture(params=[False, True], ids=["production", "debug"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def assert_scim_error(response, status: int, detail: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == SCIM_CONTENT_TYPE
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == str(status), body
    if detail is not None:
        assert body["detail"] == detail
    return body


def title_patch(title: str) -> dict:
    return {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "path": "title", "value": title}],
    }


# --- answers Django would have given as HTML ---------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/scim/v2/abc/Users", "/scim/v3/{org}/Users", "/scim/", "/scim/v2/{org}/Users/a/b"],
    ids=["organization-not-a-number", "unknown-version", "bare-prefix", "below-a-resource"],
)
def test_an_unknown_path_is_a_scim_404(tenant, debug, path):
    path = path.format(org=tenant.organization.pk)

    response = tenant.request("GET", "", base=path)

    assert_scim_error(response, 404, f"{path} is not a SCIM endpoint.")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/ServiceProviderConfig", "GET"),
        ("POST", "/Schemas", "GET"),
        ("PUT", "/Users", "GET, POST"),
        ("DELETE", "/Groups", "GET, POST"),
        ("POST", "/Users/{user}", "GET, PUT, PATCH, DELETE"),
        ("GET", "/Users/.search", "POST"),
        ("GET", "/.search", "POST"),
    ],
)
def test_a_method_a_route_does_not_offer_is_a_scim_405_with_allow(
    tenant, debug, method, path, allow
):
    """RFC 9110 §15.5.6: a 405 names the methods the route does serve (Allow), and the
    detail says them too."""
    user = tenant.request("POST", "/Users", scim_user("allow@acme.com")).json()["id"]
    path = path.format(user=user)

    response = tenant.request(method, path, {} if method in ("POST", "PUT") else None)

    body = assert_scim_error(response, 405)
    assert response["Allow"] == allow
    assert body["detail"].endswith(f"; it supports {allow}."), body


def test_a_body_over_the_limit_is_a_scim_413(tenant, debug, settings):
    settings.BEEM_MAX_BODY_BYTES = 100

    response = tenant.request("POST", "/Users", scim_user("big@acme.com"))

    assert_scim_error(response, 413)


def test_an_error_raised_by_a_middleware_is_a_scim_error(tenant, debug):
    # Django's host check raises in the middleware before any SCIM view runs; it answers 400
    # with an HTML page (a debug page in DEBUG).
    response = tenant.request("GET", "/Users", headers={"Host": "evil.example"})

    assert_scim_error(response, 400, "Bad Request.")


def _break_the_record_table() -> None:
    # A real database error inside the view: the column every SCIM read and write uses is gone
    # (inside the test's transaction, so the schema comes back when the test ends).
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE directory_sync_directoryrecord RENAME COLUMN document TO gone")


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_a_database_error_in_a_view_is_a_scim_500_logged_with_its_traceback(
    tenant, debug, method, caplog
):
    user_id = tenant.request("POST", "/Users", scim_user("sara@acme.com")).json()["id"]
    _break_the_record_table()

    with caplog.at_level(logging.WARNING):
        response = tenant.request(
            method, f"/Users/{user_id}", title_patch("CTO") if method == "PATCH" else None
        )

    body = assert_scim_error(response, 500)
    assert body["detail"] == (
        "The service failed to complete the SCIM request; the failure was logged with request "
        f"id {response['X-Request-ID']}."
    )
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert [r.getMessage() for r in errors][:1] == [
        f"Internal Server Error: /scim/v2/{tenant.organization.pk}/Users/{user_id}"
    ]


@pytest.mark.postgres
def test_a_failed_write_rolls_back_and_is_still_in_the_request_log(tenant, require_postgres):
    user_id = tenant.request("POST", "/Users", scim_user("sara@acme.com")).json()["id"]
    with connection.cursor() as cursor:
        # The write's UPDATE fails after the record was locked and checked.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending trigger events to ALTER
        cursor.execute(
            "ALTER TABLE directory_sync_directoryrecord ADD CONSTRAINT beem_no_cto "
            "CHECK (NOT (document::text LIKE '%\"CTO\"%'))"
        )

    response = tenant.request("PATCH", f"/Users/{user_id}", title_patch("CTO"))

    assert_scim_error(response, 500)
    record = DirectoryRecord.objects.get(scim_id=user_id)
    assert "title" not in record.document and record.version == 1
    assert RequestLog.objects.filter(method="PATCH").get().status == 500


# --- database bounds (PostgreSQL) --------------------------------------------------------------


@pytest.fixture
def bounded(transactional_db, settings):
    """Short SCIM timeouts, on a connection outside any test transaction (as in production:
    each of the request's statements starts a transaction of its own or the write's)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    settings.BEEM_SCIM_STATEMENT_TIMEOUT_MS = 5_000
    settings.BEEM_SCIM_LOCK_TIMEOUT_MS = 300
    return settings


@pytest.fixture
def other_connection(bounded):
    """A second PostgreSQL session, as another web process or a worker would hold one."""
    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"],
        port=params["PORT"] or 5432,
        user=params["USER"],
        password=params["PASSWORD"] or None,
        dbname=params["NAME"],
    ) as other:
        yield other
        other.rollback()


def _session_setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


@pytest.mark.postgres
def test_a_write_waiting_on_a_lock_past_the_lock_timeout_is_a_503_and_changes_nothing(
    tenant_factory, bounded, other_connection, caplog
):
    tenant = tenant_factory(slug="acme-locks", name="Acme")
    user_id = tenant.request("POST", "/Users", scim_user("sara@acme.com")).json()["id"]
    other_connection.execute(
        "SELECT 1 FROM directory_sync_directoryrecord WHERE scim_id = %s FOR UPDATE", [user_id]
    )

    with caplog.at_level(logging.WARNING):
        response = tenant.request("PATCH", f"/Users/{user_id}", title_patch("CTO"))

    assert_scim_error(
        response,
        503,
        "Another change to the same data is still in progress (waited 300 ms). "
        "Nothing was changed; send the request again later.",
    )
    assert response["Retry-After"] == "5"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.levelname for r in caplog.records if r.exc_info] == ["WARNING"]
    other_connection.rollback()
    record = DirectoryRecord.objects.get(scim_id=user_id)
    assert "title" not in record.document and record.version == 1
    assert RequestLog.objects.filter(method="PATCH").get().status == 503
    # The same request, sent again once the lock is gone, is applied.
    response = tenant.request("PATCH", f"/Users/{user_id}", title_patch("CTO"))
    assert response.status_code == 200 and response.json()["title"] == "CTO"


@pytest.mark.postgres
def test_a_statement_past_the_statement_timeout_is_a_503(tenant_factory, bounded, other_connection):
    bounded.BEEM_SCIM_STATEMENT_TIMEOUT_MS = 300
    bounded.BEEM_SCIM_LOCK_TIMEOUT_MS = 0
    tenant = tenant_factory(slug="acme-slow", name="Acme")
    user_id = tenant.request("POST", "/Users", scim_user("sara@acme.com")).json()["id"]
    other_connection.execute(
        "SELECT 1 FROM directory_sync_directoryrecord WHERE scim_id = %s FOR UPDATE", [user_id]
    )

    response = tenant.request("DELETE", f"/Users/{user_id}")

    assert_scim_error(
        response,
        503,
        "The request took longer than this service allows for one database step (300 ms). "
        "Nothing was changed; send the request again later.",
    )
    assert response["Retry-After"] == "5"
    other_connection.rollback()
    assert DirectoryRecord.objects.get(scim_id=user_id).deleted_at is None


@pytest.mark.postgres
def test_a_read_blocked_by_a_table_lock_is_a_503(tenant_factory, bounded, other_connection):
    tenant = tenant_factory(slug="acme-read-lock", name="Acme")
    user_id = tenant.request("POST", "/Users", scim_user("sara@acme.com")).json()["id"]
    other_connection.execute("LOCK TABLE directory_sync_directoryrecord IN ACCESS EXCLUSIVE MODE")

    response = tenant.request("GET", f"/Users/{user_id}")

    assert_scim_error(response, 503)
    assert response["Retry-After"] == "5"


@pytest.mark.postgres
def test_a_timeout_in_the_authentication_check_is_a_503(
    tenant_factory, bounded, other_connection, debug
):
    tenant = tenant_factory(slug="acme-auth-lock", name="Acme")
    other_connection.execute("LOCK TABLE oauth2_provider_accesstoken IN ACCESS EXCLUSIVE MODE")

    response = tenant.request("GET", "/Users")

    assert_scim_error(response, 503)


def _bounds_now() -> tuple[str, str]:
    return (_session_setting("statement_timeout"), _session_setting("lock_timeout"))


@pytest.mark.postgres
def test_the_timeouts_bound_every_transaction_of_a_scim_request_and_end_with_it(bounded, rf):
    # Behind PgBouncer in transaction mode the next transaction on this server connection may
    # be another client's: the bounds must end with the transaction that set them.
    server_defaults = _bounds_now()
    assert server_defaults != ("5s", "300ms")
    seen = {}

    def view(request):
        seen["a statement on its own"] = _bounds_now()
        with transaction.atomic():
            seen["a transaction's first statement"] = _session_setting("statement_timeout")
            seen["its later statements"] = _bounds_now()
        return HttpResponse()

    middleware.ScimDatabaseBoundsMiddleware(view)(rf.get("/scim/v2/1/Users"))

    assert seen == {
        "a statement on its own": ("5s", "300ms"),
        "a transaction's first statement": "5s",
        "its later statements": ("5s", "300ms"),
    }
    backend = connection.connection.info.backend_pid
    assert _bounds_now() == server_defaults
    with transaction.atomic():
        assert _bounds_now() == server_defaults
    assert connection.connection.info.backend_pid == backend  # the same session throughout


@pytest.mark.postgres
def test_the_timeouts_apply_to_scim_requests_only(tenant_factory, bounded, client, monkeypatch):
    tenant = tenant_factory(slug="acme-scope", name="Acme")
    server_defaults = _bounds_now()
    bounded_paths = []
    real = middleware.db.transaction_timeouts

    def spy(*bounds):
        bounded_paths.append(bounds)
        return real(*bounds)

    monkeypatch.setattr(middleware.db, "transaction_timeouts", spy)
    assert client.get("/login/").status_code == 200
    assert tenant.request("GET", "/Users").status_code == 200

    assert bounded_paths == [(5_000, 300)]
    assert _bounds_now() == server_defaults


@pytest.mark.postgres
def test_a_request_on_a_connection_the_database_dropped_is_a_503(
    tenant_factory, bounded, other_connection
):
    # A database restart or failover between two of Entra's calls: the process's connection is
    # gone, and the next request finds out on its first statement.
    tenant = tenant_factory(slug="acme-restart", name="Acme")
    user_id = tenant.request("POST", "/Users", scim_user("sara@acme.com")).json()["id"]
    assert tenant.request("GET", f"/Users/{user_id}").status_code == 200
    pid = connection.connection.info.backend_pid
    other_connection.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])

    response = tenant.request("GET", f"/Users/{user_id}")

    assert_scim_error(
        response,
        503,
        "The database is unavailable. Nothing was changed; send the request again later.",
    )
    assert response["Retry-After"] == "5"
    # What a server does after each request (Django's test client leaves it out): the broken
    # connection is closed, and the next request opens a new one.
    close_old_connections()
    assert tenant.request("GET", f"/Users/{user_id}").status_code == 200
