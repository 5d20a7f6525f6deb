"""The SCIM write hot paths: how few statements a warm write takes, one commit per write
(record and outbox event together; the request-log row is written after it, outside its
transaction), and the PATCH fast path giving exactly what the scim2-models engine gives."""

import copy
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from directory_sync import runs
from directory_sync.models import DirectoryMembership, RequestLog
from directory_sync.scim import request_log
from directory_sync.scim.documents import user_document_from_payload
from directory_sync.scim.patch import (
    _engine_patch_apply,
    _normalise_user_operation,
    _simple_user_patch,
)

from .conftest import (
    ENTERPRISE,
    USER_SCHEMA,
    create_group,
    create_user,
    entra_user,
    events_of,
    patch_body,
    record_of,
)

RECORDS = '"directory_sync_directoryrecord"'
LINKS = '"directory_sync_directorymembership"'


@pytest.fixture
def quiet_bookkeeping(settings, monkeypatch):
    """No periodic bookkeeping write during the measured request (auth cache expiry,
    last_request_at, run counts, the request log's flush after the response): the count is
    then the write path's own."""
    settings.BEEM_SCIM_AUTH_CACHE_SECONDS = 3600
    settings.BEEM_RUN_COUNT_FLUSH_SECONDS = 3600
    settings.BEEM_REQUEST_LOG_FLUSH_SECONDS = 3600
    monkeypatch.setattr("directory_sync.flusher.BACKGROUND_FLUSH", False)
    monkeypatch.setattr(runs, "LAST_REQUEST_WRITE_SECONDS", 3600)
    yield
    request_log.request_log_buffer_discard()


def _statements(capture) -> list[str]:
    return [query["sql"] for query in capture.captured_queries]


def _at_most(statements: list[str], most: int) -> None:
    """The whole request's pin is PostgreSQL's (CI runs it there); the embedded SQLite default
    reads the open provisioning run through the ORM, a statement or two more."""
    if connection.vendor == "postgresql":
        assert len(statements) <= most, "\n".join(statements)


def _on(table: str, statements: list[str]) -> list[str]:
    return [sql for sql in statements if table in sql]


def _verb(sql: str) -> str:
    """A statement's verb; for ``WITH ... written AS (<statement>) ...`` the inner one's."""
    if sql.startswith("WITH ") and "written AS (" in sql:
        sql = sql.split("written AS (", 1)[1]
    return sql.split()[0]


def _event_in_the_same_statement(record_sql: str, statements: list[str]) -> None:
    """On PostgreSQL the outbox event is appended by the record's own statement (a CTE); the
    embedded SQLite default appends it with a statement of its own."""
    events = [
        sql for sql in statements if sql.startswith('INSERT INTO "directory_sync_changeevent"')
    ]
    if connection.vendor == "postgresql":
        assert "INSERT INTO directory_sync_changeevent" in record_sql
        assert not events, statements
    else:
        assert len(events) == 1, statements


def _run_read_by(first_record_sql: str, statements: list[str]) -> None:
    """On PostgreSQL the write's first record statement also reads the open provisioning run
    (no statement of its own); SQLite reads it first through the ORM."""
    runs = [sql for sql in statements if "directory_sync_provisioningrun" in sql]
    if connection.vendor == "postgresql":
        assert runs == [first_record_sql], statements


def _log_row_not_in_the_write(statements: list[str]) -> None:
    # The log row is written after the response, outside the write's transaction, so it can
    # neither slow the write down nor fail or undo it (issue 12).
    assert not _on("directory_sync_requestlog", statements), statements
    assert sum(sql.startswith(("BEGIN", "COMMIT")) for sql in statements) <= 2


def test_warm_post_is_one_insert_of_the_record(scim, quiet_bookkeeping):
    create_user(scim, user_name="warm@contoso.com", external_id=str(uuid.uuid4()))
    with CaptureQueriesContext(connection) as capture:
        create_user(scim, user_name="measured@contoso.com", external_id=str(uuid.uuid4()))
    statements = _statements(capture)
    records = _on(RECORDS, statements)
    assert len(records) == 1 and _verb(records[0]) == "INSERT", statements
    assert "ON CONFLICT DO NOTHING" in records[0]
    _event_in_the_same_statement(records[0], statements)
    _run_read_by(records[0], statements)
    _log_row_not_in_the_write(statements)
    # transaction, record with its event and the open run.
    _at_most(statements, 3)


def test_warm_patch_is_one_locked_read_and_one_update(scim, quiet_bookkeeping):
    user = create_user(scim, mobile="+966512345678")
    operations = [
        {"op": "Replace", "path": "title", "value": "Lead"},
        {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Sales"},
    ]
    assert scim.patch(f"/Users/{user['id']}", json=patch_body(*operations)).status_code == 200
    operations[0]["value"] = "Principal"
    with CaptureQueriesContext(connection) as capture:
        response = scim.patch(f"/Users/{user['id']}", json=patch_body(*operations))
    assert response.status_code == 200, response.content
    assert response.json()["title"] == "Principal"
    statements = _statements(capture)
    records = _on(RECORDS, statements)
    assert [_verb(sql) for sql in records] == ["SELECT", "UPDATE"], statements
    if connection.features.has_select_for_update:
        assert "FOR NO KEY UPDATE" in records[0]
    _event_in_the_same_statement(records[1], statements)
    _run_read_by(records[0], statements)
    _log_row_not_in_the_write(statements)
    # transaction, lock with the open run, update with its event.
    _at_most(statements, 4)
    assert record_of(user["id"]).document["title"] == "Principal"


def test_warm_group_member_add_and_remove_are_one_statement_each(scim, quiet_bookkeeping):
    users = [
        create_user(
            scim,
            user_name=f"m{i}@contoso.com",
            external_id=str(uuid.uuid4()),
            mobile=f"+96651234567{i}",
        )
        for i in range(2)
    ]
    group = create_group(scim)
    path = f"/Groups/{group['id']}"
    add = patch_body({"op": "Add", "path": "members", "value": [{"value": users[0]["id"]}]})
    assert scim.patch(path, json=add).status_code == 204
    for op in ("Add", "Remove"):
        body = patch_body({"op": op, "path": "members", "value": [{"value": users[1]["id"]}]})
        with CaptureQueriesContext(connection) as capture:
            response = scim.patch(path, json=body)
        assert response.status_code == 204, response.content
        statements = _statements(capture)
        [links] = _on(LINKS, statements)
        _run_read_by(_on(RECORDS, statements)[0], statements)
        if connection.vendor == "postgresql":
            # The member statement also bumps the version and appends the event.
            assert links.startswith("WITH links AS (")
            assert "INSERT INTO directory_sync_changeevent" in links
        _log_row_not_in_the_write(statements)
        # transaction, lock with the open run, member change with version and event.
        _at_most(statements, 4)
    group_pk = record_of(group["id"]).pk
    members = DirectoryMembership.objects.filter(group_record_id=group_pk)
    assert list(members.values_list("user_record__scim_id", flat=True)) == [
        uuid.UUID(users[0]["id"])
    ]
    assert [kind for kind, _ in events_of(group["id"])] == [
        "created",
        "members_changed",
        "members_changed",
        "members_changed",
    ]


def test_adding_a_member_twice_changes_nothing_and_unknown_ids_write_nothing(scim):
    user = create_user(scim)
    group = create_group(scim)
    path = f"/Groups/{group['id']}"
    add = patch_body({"op": "Add", "path": "members", "value": [{"value": user["id"]}]})
    assert scim.patch(path, json=add).status_code == 204
    assert scim.patch(path, json=add).status_code == 204
    unknown = str(uuid.uuid4())
    both = patch_body(
        {"op": "Add", "path": "members", "value": [{"value": user["id"]}, {"value": unknown}]}
    )
    response = scim.patch(path, json=both)
    assert response.status_code == 400
    assert unknown in response.json()["detail"]
    assert [kind for kind, _ in events_of(group["id"])] == ["created", "members_changed"]


def test_refused_writes_still_log_their_request(scim):
    user = create_user(scim, user_name="taken@contoso.com")
    before = RequestLog.objects.count()
    response = scim.post("/Users", json=entra_user(user_name="TAKEN@contoso.com"))
    assert response.status_code == 409
    bad = patch_body({"op": "Replace", "path": "active", "value": "perhaps"})
    assert scim.patch(f"/Users/{user['id']}", json=bad).status_code == 400
    assert RequestLog.objects.count() == before + 2
    assert [kind for kind, _ in events_of(user["id"])] == ["created"]


def test_a_log_row_that_cannot_be_stored_leaves_the_write_intact(scim, monkeypatch):
    from directory_sync.scim import request_log

    row_values = request_log._row_values

    def broken(**kwargs):
        values = row_values(**kwargs)
        values["method"] = None  # NOT NULL: every database refuses the row
        return values

    monkeypatch.setattr(request_log, "_row_values", broken)
    before = RequestLog.objects.count()
    user = create_user(scim, user_name="kept@contoso.com")
    assert record_of(user["id"]).user_name == "kept@contoso.com"
    assert [kind for kind, _ in events_of(user["id"])] == ["created"]
    assert RequestLog.objects.count() == before


# --- PATCH fast path == engine ----------------------------------------------------------------


def _documents() -> list[dict]:
    full = user_document_from_payload(entra_user(mobile="+966512345678"))
    bare = user_document_from_payload(
        {"schemas": [USER_SCHEMA], "userName": "bare@contoso.com", "active": True}
    )
    return [full, bare]


SIMPLE_OPERATIONS = [
    [{"op": "Replace", "path": "title", "value": "Lead"}],
    [{"op": "Add", "path": "title", "value": "Lead"}],
    [{"op": "replace", "path": "displayName", "value": "Alice W."}],
    [{"op": "Replace", "path": "userName", "value": "New.Name@contoso.com"}],
    [{"op": "Replace", "path": "externalId", "value": "ext-2"}],
    [{"op": "Replace", "path": "name.givenName", "value": "Al"}],
    [{"op": "Add", "path": "name.familyName", "value": "W"}],
    [{"op": "Replace", "path": f"{USER_SCHEMA}:title", "value": "Urn"}],
    [{"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Ops"}],
    [{"op": "Add", "path": f"{ENTERPRISE}:employeeNumber", "value": "E-7"}],
    [{"op": "Replace", "path": "active", "value": "False"}],
    [{"op": "Replace", "path": "active", "value": "True"}],
    [{"op": "Replace", "path": "active", "value": "false"}],
    [{"op": "Replace", "path": "active", "value": False}],
    [{"op": "Replace", "path": "active", "value": True}],
    # Entra's default mappings for a non-gallery app (issue 15).
    [{"op": "Replace", "path": "name.formatted", "value": "Alice Wong"}],
    [{"op": "Add", "path": "nickName", "value": "Al"}],
    [{"op": "Replace", "path": "preferredLanguage", "value": "en-US"}],
    [{"op": "Replace", "path": f"{ENTERPRISE}:costCenter", "value": "CC1"}],
    [
        {"op": "Replace", "path": "name.middleName", "value": "J"},
        {"op": "Replace", "path": f"{ENTERPRISE}:organization", "value": "Contoso"},
        {"op": "Replace", "path": "userType", "value": "Member"},
    ],
    # Value-filter paths of Entra's default mappings: an existing entry, a new one.
    [{"op": "Replace", "path": 'addresses[type eq "work"].locality', "value": "Riyadh"}],
    [{"op": "Add", "path": 'addresses[type eq "home"].formatted', "value": "Villa 7"}],
    [{"op": "Add", "path": 'addresses[type eq "work"].country', "value": "AE"}],
    [{"op": "Replace", "path": 'phoneNumbers[type eq "fax"].value', "value": "+966112345679"}],
    [{"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+966512345670"}],
    [{"op": "Replace", "path": 'emails[type eq "work"].value', "value": "a@b.example"}],
    [
        {"op": "Replace", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Rd"},
        {"op": "Replace", "path": 'addresses[type eq "work"].postalCode', "value": "12211"},
        {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "+966112345678"},
    ],
    [
        {"op": "Replace", "path": "title", "value": "Title 7"},
        {"op": "Replace", "path": "name.familyName", "value": "Family 7"},
        {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Dept 7"},
    ],
]


@pytest.mark.parametrize("operations", SIMPLE_OPERATIONS)
def test_fast_path_gives_what_the_engine_gives(operations):
    for document in _documents():
        normalised = [_normalise_user_operation(op) for op in operations]
        fast = _simple_user_patch(copy.deepcopy(document), normalised)
        assert fast is not None, operations
        engine = _engine_patch_apply(copy.deepcopy(document), normalised)
        assert fast == engine
        assert list(fast) == list(engine)
        for container in ("name", ENTERPRISE):
            assert list(fast.get(container, {})) == list(engine.get(container, {}))


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "Remove", "path": "title"}],
        [{"op": "Replace", "path": "title", "value": ""}],
        [{"op": "Replace", "path": "title", "value": 7}],
        [{"op": "Replace", "path": "active", "value": "maybe"}],
        [{"op": "Replace", "path": 'emails[type eq "work"].Value', "value": "a@b.example"}],
        [{"op": "Replace", "path": 'emails[type eq "work"].value', "value": ""}],
        [{"op": "Replace", "path": 'addresses[type eq "office"].locality', "value": "x"}],
        [{"op": "Replace", "path": 'addresses[type eq "work"].primary', "value": "x"}],
        [{"op": "Replace", "path": 'emails[value eq "a@b.example"].type', "value": "home"}],
        [{"op": "Replace", "value": {"title": "x"}}],
        [{"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": str(uuid.uuid4())}],
        [{"op": "Replace", "path": "password", "value": "secret"}],
        [{"op": "Replace", "path": "profileUrl", "value": "https://contoso.com/a"}],
    ],
)
def test_other_shapes_go_through_the_engine(operations):
    normalised = [_normalise_user_operation(op) for op in operations]
    assert _simple_user_patch(_documents()[0], normalised) is None
