"""Property-based fuzzing of the SCIM endpoint, in-process against the real views.

Over 10,000 generated requests per run (``BEEM_FUZZ_SCALE`` multiplies every budget): Entra
bodies with parts broken or retyped, PATCH operations with odd paths and values, filters with
injection attempts and unknown operators, odd query strings, invalid UTF-8, deep nesting, wrong
content types, every method on every route with foreign and malformed ids. After each request:
never a 5xx, every error a SCIM error body with its status (and a ``scimType`` on 400); after
each request and at the end: every stored record is a valid SCIM resource whose mirror
columns equal its document, and the other tenant's data is untouched and never visible.

The ``ci`` profile is derandomized so CI is reproducible; ``BEEM_FUZZ_PROFILE=explore`` draws
fresh examples (run it locally with a larger ``BEEM_FUZZ_SCALE`` to hunt for new bugs).
"""

import json
import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from directory_sync.models import DirectoryRecord
from members.models import Department, Member

from . import scim_strategies as S
from .conftest import (
    LIST_SCHEMA,
    PATCH_SCHEMA,
    REQUEST_COUNTER,
    SCIM_CONTENT_TYPE,
    scim_user,
    tenant_create,
)
from .scim_invariants import (
    applied_problems,
    organization_state,
    read_back_problems,
    record_problems,
    record_state,
    response_problems,
    store_problems,
    unchanged_problems,
)

SCALE = float(os.environ.get("BEEM_FUZZ_SCALE", "1"))
settings.register_profile(
    "ci",
    deadline=None,
    database=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "explore",
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
PROFILE = os.environ.get("BEEM_FUZZ_PROFILE", "ci")

# Examples per test; each example sends at least one request. Sum: 11,400.
BUDGET = {
    "user_create": 2000,
    "user_replace": 1000,
    "user_patch": 2500,
    "group": 1500,
    "query": 2000,
    "raw": 1000,
    "routes": 500,
    "hostile": 300,
}


# Built once: building a strategy per example costs more than drawing from it.
USER_BODIES = S.mutated(S.user_documents())
GROUP_BODIES = S.mutated(S.group_documents())
USER_PATCHES = S.patch_bodies(S.USER_PATHS)
GROUP_PATCHES = S.patch_bodies(S.GROUP_PATHS)
FILTERS = S.filters()


def examples(name: str) -> settings:
    return settings(settings.get_profile(PROFILE), max_examples=max(1, int(BUDGET[name] * SCALE)))


class World:
    """Tenant A (fuzzed) and tenant B (must stay untouched and invisible)."""

    def __init__(self):
        self.a = tenant_create(slug="fuzz-a", name="Fuzz A")
        self.b = tenant_create(slug="fuzz-b", name="Fuzz B")
        for i in range(3):
            response = self.b.request(
                "POST", "/Users", scim_user(f"b{i}@globex.com", phone=f"+96655{i:07d}")
            )
            assert response.status_code == 201, response.content
        group = self.b.request(
            "POST",
            "/Groups",
            {"schemas": [S.GROUP_SCHEMA], "displayName": "B group", "externalId": "b-group"},
        )
        assert group.status_code == 201, group.content
        self.b_group_id = group.json()["id"]
        for i in range(12):
            response = self.a.request(
                "POST", "/Users", scim_user(f"seed{i}@contoso.com", phone=f"+96656{i:07d}")
            )
            assert response.status_code == 201, response.content
        for i in range(3):
            response = self.a.request(
                "POST", "/Groups", {"schemas": [S.GROUP_SCHEMA], "displayName": f"A group {i}"}
            )
            assert response.status_code == 201, response.content
        self.b_snapshot = self.snapshot(self.b.organization)
        self.b_ids = self.ids(self.b.organization, "User") + self.ids(self.b.organization, "Group")

    @staticmethod
    def ids(organization, resource_type: str) -> list[str]:
        return [
            str(pk)
            for pk in DirectoryRecord.objects.filter(
                organization=organization, resource_type=resource_type, deleted_at__isnull=True
            )
            .order_by("id")
            .values_list("scim_id", flat=True)
        ]

    @staticmethod
    def snapshot(organization) -> dict:
        return {
            str(r.scim_id): (r.version, json.dumps(r.document, sort_keys=True), r.deleted_at)
            for r in DirectoryRecord.objects.filter(organization=organization)
        }

    def a_ids(self, resource_type: str) -> list[str]:
        return self.ids(self.a.organization, resource_type)


@pytest.fixture
def world(transactional_db, settings) -> World:
    # Committed for real (not inside a test transaction): a write's transaction must commit
    # what it answered, and its eager apply runs on that commit, as in the embedded default.
    # Client secrets are hashed like passwords; the default hasher is slow by design and the
    # fuzzer creates credentials for every test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return World()


NOT_IMPLEMENTED_ROUTES = ("/Bulk", "/Me")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def send(
    world: World,
    method: str,
    path: str,
    body=None,
    *,
    touched: str | None = None,
    raw: bytes | str | None = None,
    content_type: str = SCIM_CONTENT_TYPE,
    tenant=None,
):
    """Send one request to tenant A (or ``tenant``) and check it: the per-request properties
    of ``check``, and for a write the contract of issue 12: a 2xx is readable as answered and
    applied, a 4xx changed nothing."""
    tenant = tenant or world.a
    organization_id = tenant.organization.pk
    write = method in WRITE_METHODS
    if write:
        before = organization_state(organization_id)
        target_before = record_state(touched)
    response = tenant.request(method, path, body, raw=raw, content_type=content_type)
    check(world, response, touched=touched, tenant=tenant)
    if not write:
        return response
    status, problems = response.status_code, []
    if 400 <= status < 500:
        problems = unchanged_problems(
            before, organization_state(organization_id), target_before, record_state(touched)
        )
    elif status < 300:
        problems = written_problems(tenant, method, path, response, touched)
    assert not problems, "\n".join([f"{method} {path} -> {status}:", *problems])
    return response


def written_problems(tenant, method: str, path: str, response, touched: str | None) -> list[str]:
    answered = response.json() if response.content else None
    scim_id = (answered or {}).get("id") if isinstance(answered, dict) else None
    scim_id = scim_id or touched
    try:
        uuid.UUID(str(scim_id))
    except ValueError:
        return []
    resource = "/Groups" if path.removeprefix(tenant.base).startswith("/Groups") else "/Users"
    problems = applied_problems(str(scim_id))
    read = tenant.request("GET", f"{resource}/{scim_id}")
    if method == "DELETE":
        if read.status_code != 404:
            problems.append(f"deleted, then read {read.status_code}")
        return problems
    if read.status_code != 200:
        return [*problems, f"written, then read {read.status_code}: {read.content[:300]!r}"]
    if isinstance(answered, dict) and answered.get("id") == str(scim_id):
        problems += read_back_problems(answered, read.json())
    return problems


def check(world: World, response, *, touched: str | None = None, tenant=None) -> None:
    """The per-request properties; ``touched`` is the SCIM id the request tried to write."""
    tenant = tenant or world.a
    path = response.request["PATH_INFO"].removeprefix(tenant.base)
    problems = response_problems(response, not_implemented_ok=path in NOT_IMPLEMENTED_ROUTES)
    body = None
    if response.status_code in (200, 201) and response.content:
        body = response.json()
        if body.get("schemas") == [LIST_SCHEMA]:
            problems += list_problems(world, body)
        elif response.status_code == 201 and "id" not in body:
            problems.append("201 without an id")
    ids = [touched] if touched and response.status_code < 300 else []
    if response.status_code == 201 and body and "id" in body:
        ids.append(body["id"])
    for scim_id in ids:
        try:
            uuid.UUID(str(scim_id))
        except ValueError:
            continue
        record = DirectoryRecord.objects.filter(scim_id=scim_id).first()
        if record is not None:
            if record.organization_id != tenant.organization.pk:
                problems.append(f"request on tenant A succeeded on tenant B's record {scim_id}")
            problems += record_problems(record)
    assert not problems, "\n".join(problems)


def list_problems(world: World, body: dict) -> list[str]:
    problems = []
    resources = body.get("Resources", [])
    if not isinstance(body.get("totalResults"), int) or body["totalResults"] < len(resources):
        problems.append(f"totalResults {body.get('totalResults')!r} < {len(resources)} resources")
    for key in ("startIndex", "itemsPerPage"):
        if not isinstance(body.get(key), int):
            problems.append(f"ListResponse.{key} is {body.get(key)!r}")
    b_ids = set(world.b_ids)
    for resource in resources:
        if resource.get("id") in b_ids:
            problems.append(f"tenant B's resource {resource['id']} listed to tenant A")
    return problems


def finish(world: World) -> None:
    """Whole-store properties after a fuzz session."""
    assert store_problems(organization_ids=[world.a.organization.pk]) == []
    assert world.snapshot(world.b.organization) == world.b_snapshot


# Which resource a request addresses: one of tenant A's (most often), one of tenant B's, an
# unknown UUID, or not a UUID at all. Drawn as data and resolved against the live pools at
# send time, so the draws never depend on database state.
targets = st.one_of(
    st.tuples(st.just("own"), st.integers(0, 999)),
    st.tuples(st.just("own"), st.integers(0, 999)),
    st.tuples(st.just("own"), st.integers(0, 999)),
    st.tuples(st.just("foreign"), st.integers(0, 999)),
    st.tuples(st.just("uuid"), st.uuids().map(str)),
    st.tuples(
        st.just("text"),
        S.odd_text.map(lambda t: t.replace("/", "").replace("?", "").replace("#", "") or "x"),
    ),
)


def target_id(target: tuple, own: list[str], foreign: list[str]) -> str:
    kind, value = target
    if kind == "own":
        return own[value % len(own)] if own else str(uuid.UUID(int=value))
    if kind == "foreign":
        return foreign[value % len(foreign)]
    return value


# --- users -----------------------------------------------------------------------------------


def test_fuzzed_user_creation_never_breaks_the_store(world):
    before = REQUEST_COUNTER["scim"]

    @examples("user_create")
    @given(data=st.data())
    def run(data):
        body = data.draw(USER_BODIES, label="body")
        pool = world.a_ids("User") + world.b_ids[:1]
        response = send(world, "POST", "/Users", S.resolve(body, pool))
        if response.status_code == 201:
            again = world.a.request("GET", f"/Users/{response.json()['id']}")
            assert again.status_code == 200
            assert again.json()["userName"] == response.json()["userName"]

    run()
    finish(world)
    print(f"user creation: {REQUEST_COUNTER['scim'] - before} requests")


def test_fuzzed_user_replacement_never_breaks_the_store(world):
    @examples("user_replace")
    @given(data=st.data())
    def run(data):
        target = data.draw(targets, label="target")
        body = data.draw(USER_BODIES, label="body")
        reuse = data.draw(st.booleans(), label="reuse a taken userName")
        users = world.a_ids("User")
        scim_id = target_id(target, users, world.b_ids)
        body = S.resolve(body, users)
        if reuse and isinstance(body, dict) and users:
            body["userName"] = DirectoryRecord.objects.get(scim_id=users[0]).user_name.upper()
        send(world, "PUT", f"/Users/{scim_id}", body, touched=scim_id)

    run()
    finish(world)


def test_fuzzed_user_patches_never_break_the_store(world):
    @examples("user_patch")
    @given(data=st.data())
    def run(data):
        target = data.draw(targets, label="target")
        action = data.draw(st.sampled_from(["PATCH"] * 17 + ["GET", "GET", "DELETE"]))
        body = data.draw(USER_PATCHES, label="patch")
        users = world.a_ids("User")
        scim_id = target_id(target, users, world.b_ids)
        if action == "PATCH":
            body = S.resolve(body, users + world.b_ids[:1])
            response = send(world, "PATCH", f"/Users/{scim_id}", body, touched=scim_id)
        else:
            response = send(world, action, f"/Users/{scim_id}", touched=scim_id)
        if scim_id in world.b_ids:
            assert response.status_code == 404, response.content

    run()
    finish(world)


# --- groups ----------------------------------------------------------------------------------


def test_fuzzed_group_writes_never_break_the_store(world):
    @examples("group")
    @given(data=st.data())
    def run(data):
        action = data.draw(st.sampled_from(["POST", "PUT", "PATCH", "PATCH", "PATCH", "DELETE"]))
        target = data.draw(targets, label="target")
        if action in ("POST", "PUT"):
            body = data.draw(GROUP_BODIES, label="body")
        elif action == "PATCH":
            body = data.draw(GROUP_PATCHES, label="patch")
        else:
            body = None
        # Member references point at tenant A's users mostly, and at tenant B's sometimes.
        body = S.resolve(body, world.a_ids("User") + world.b_ids)
        if action == "POST":
            scim_id = None
            response = send(world, "POST", "/Groups", body)
        else:
            scim_id = target_id(target, world.a_ids("Group"), world.b_ids)
            response = send(world, action, f"/Groups/{scim_id}", body, touched=scim_id)
        if scim_id in world.b_ids:
            assert response.status_code == 404, response.content

    run()
    finish(world)


# --- reads -----------------------------------------------------------------------------------


def test_fuzzed_filters_and_query_strings_never_widen_or_break(world):
    from urllib.parse import urlencode

    @examples("query")
    @given(data=st.data())
    def run(data):
        params = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "filter": FILTERS,
                    "startIndex": S.query_numbers,
                    "count": S.query_numbers,
                    "attributes": S.attribute_lists,
                    "excludedAttributes": S.attribute_lists,
                    "sortBy": st.sampled_from(["userName", "x"]),
                    "unknown": S.odd_text,
                },
            ),
            label="query",
        )
        resource = data.draw(st.sampled_from(["/Users", "/Groups"]))
        encode_spaces_as_plus = data.draw(st.booleans())
        query = (
            urlencode(params) if encode_spaces_as_plus else urlencode(params).replace("+", "%20")
        )
        response = world.a.request("GET", resource, query=query)
        check(world, response)
        if response.status_code == 200:
            assert response.json()["schemas"] == [LIST_SCHEMA]

    run()
    finish(world)


# --- raw bodies, content types, routes -------------------------------------------------------

raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"\xff\xfe\xfd",
            b'{"userName": "\xc3\x28"}',
            b'{"userName": "a\xed\xa0\x80b"}',
            b"\xef\xbb\xbf{}",
            b"{",
            b"}",
            b"null",
            b"[]",
            b"1",
            b'"string"',
            b'{"userName": NaN}',
            b'{"userName": Infinity}',
            b'{"active": 1e999}',
            b'{"userName": "a", "userName": "b"}',
            b'{"userName": "\\ud800"}',
            b'{"Operations": [{"op": "add", "path": "\\u0000"}]}',
        ]
    ),
    st.integers(min_value=1, max_value=100_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(min_value=1, max_value=50_000).map(lambda n: b"[" * n),
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
)
content_types = st.sampled_from(
    [
        "application/scim+json",
        "application/json",
        "application/scim+json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/json; charset=bogus",
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "",
    ]
)


def test_fuzzed_raw_bodies_and_content_types_answer_scim_errors(world):
    @examples("raw")
    @given(data=st.data())
    def run(data):
        method = data.draw(st.sampled_from(["POST", "PUT", "PATCH"]))
        resource = data.draw(st.sampled_from(["Users", "Groups"]))
        index = data.draw(st.integers(0, 999))
        body = data.draw(raw_bodies, label="raw body")
        content_type = data.draw(content_types, label="content type")
        path = f"/{resource}"
        scim_id = None
        if method != "POST":
            own = world.a_ids("User" if resource == "Users" else "Group")
            scim_id = own[index % len(own)] if own else str(uuid.UUID(int=index))
            path += f"/{scim_id}"
        send(world, method, path, raw=body, content_type=content_type, touched=scim_id)

    run()
    finish(world)


ROUTES = [
    "/Users",
    "/Users/{id}",
    "/Groups",
    "/Groups/{id}",
    "/ServiceProviderConfig",
    "/ResourceTypes",
    "/ResourceTypes/User",
    "/ResourceTypes/{text}",
    "/Schemas",
    "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
    "/Schemas/{text}",
    "/Bulk",
    "/Me",
    "/.search",
    "/Users/.search",
    "/Users/{id}/",
    "/Users/",
]


def test_fuzzed_methods_on_every_route_answer_scim(world):
    @examples("routes")
    @given(data=st.data())
    def run(data):
        route = data.draw(st.sampled_from(ROUTES), label="route")
        target = data.draw(targets, label="target")
        text = data.draw(S.odd_text.map(lambda t: t.replace("/", "").replace("?", "") or "x"))
        method = data.draw(
            st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        )
        body = data.draw(st.one_of(st.none(), S.json_values), label="body")
        scim_id = target_id(target, world.a_ids("User") + world.a_ids("Group"), world.b_ids)
        path = route.replace("{id}", scim_id).replace("{text}", text)
        if method != "HEAD":
            send(
                world,
                method,
                path,
                S.resolve(body, []),
                touched=scim_id if "{id}" in route else None,
            )
        else:
            response = world.a.request(method, path, S.resolve(body, []))
            assert response.status_code < 500 or (
                response.status_code == 501 and route in NOT_IMPLEMENTED_ROUTES
            )

    run()
    finish(world)


# --- hostile text in every stored attribute (issue 12) ----------------------------------------

HOSTILE_USERS = S.hostile_user_documents()
HOSTILE_USER_PATCHES = S.hostile_user_patches()


@pytest.mark.parametrize("identify_by", ["phone", "email"])
def test_fuzzed_hostile_user_writes_are_refused_or_applied(world, identify_by):
    """Unstorable text (lone surrogates, NUL), values over every column limit and userNames
    that grow when case-folded, in an otherwise valid Entra body or PATCH: 400 with nothing
    written, or a 2xx that reads back as answered and is applied."""
    tenant = world.a
    if identify_by == "email":
        tenant = tenant_create(slug="fuzz-email", name="Fuzz email", identify_by="email")

    @examples("hostile")
    @given(data=st.data())
    def run(data):
        # Every draw is made whatever the database holds, so an example replays the same.
        action = data.draw(st.sampled_from(["POST", "POST", "PUT", "PATCH", "PATCH"]))
        index = data.draw(st.integers(0, 999), label="target")
        document = data.draw(HOSTILE_USERS, label="body")
        patch = data.draw(HOSTILE_USER_PATCHES, label="patch")
        users = world.ids(tenant.organization, "User")
        if action == "POST" or not users:
            send(world, "POST", "/Users", S.resolve(document, users), tenant=tenant)
            return
        scim_id = users[index % len(users)]
        body = S.resolve(document if action == "PUT" else patch, users)
        send(world, action, f"/Users/{scim_id}", body, touched=scim_id, tenant=tenant)

    run()
    assert store_problems(organization_ids=[tenant.organization.pk]) == []


def test_fuzzed_hostile_group_writes_are_refused_or_applied(world):
    @examples("hostile")
    @given(data=st.data())
    def run(data):
        body = S.resolve(data.draw(S.hostile_group_documents, label="body"), [])
        replace = data.draw(st.booleans(), label="PUT")
        index = data.draw(st.integers(0, 999), label="target")
        groups = world.a_ids("Group")
        if replace and groups:
            scim_id = groups[index % len(groups)]
            send(world, "PUT", f"/Groups/{scim_id}", body, touched=scim_id)
        else:
            send(world, "POST", "/Groups", body)

    run()
    finish(world)


# Every stored user attribute, its SCIM path, and the columns it is stored in.
USER_COLUMNS = [
    ("userName", "userName", [(DirectoryRecord, "user_name"), (DirectoryRecord, "user_name_key")]),
    ("externalId", "externalId", [(DirectoryRecord, "external_id")]),
    ("displayName", "displayName", [(DirectoryRecord, "display_name"), (Member, "display_name")]),
    ("name.givenName", "name.givenName", [(Member, "given_name")]),
    ("name.familyName", "name.familyName", [(Member, "family_name")]),
    ("title", "title", [(Member, "job_title")]),
    (
        "emails",
        'emails[type eq "work"].value',
        [(DirectoryRecord, "work_email"), (Member, "email")],
    ),
    ("phoneNumbers", 'phoneNumbers[type eq "mobile"].value', [(Member, "phone")]),
    ("addresses", 'addresses[type eq "work"].country', [(Member, "country")]),
    ("employeeNumber", f"{S.ENTERPRISE}:employeeNumber", [(Member, "employee_number")]),
    ("department", f"{S.ENTERPRISE}:department", [(Department, "name")]),
]


def _over(attribute: str, columns: list, length: int) -> str:
    limit = min(model._meta.get_field(name).max_length for model, name in columns)
    size = max(length, limit + 1)
    if attribute == "emails" or attribute == "userName":
        return "x" * (size - 12) + "@contoso.com"
    if attribute == "phoneNumbers":
        return "+9665" + "0" * (size - 5)
    return "x" * size


def test_every_user_attribute_over_its_columns_is_refused_or_applied(world):
    """One character over the narrowest column each attribute is stored in, far over, and
    userNames that outgrow their column once case-folded, on create and on PATCH: a 400 that
    changes nothing, or a 2xx that reads back and applies. Every case runs; all failures are
    listed together."""
    cases = [
        (attribute, path, _over(attribute, columns, length))
        for attribute, path, columns in USER_COLUMNS
        for length in (0, 5000)
    ] + [("userName", "userName", text) for text in S.FOLDS_LONGER]
    failures = []
    for i, (attribute, path, value) in enumerate(cases):
        body = scim_user(f"col{uuid.uuid4().hex[:12]}@contoso.com", phone=f"+96658{i:07d}")
        body["schemas"] = [S.USER_SCHEMA, S.ENTERPRISE]
        body = S.set_attribute(body, attribute, value)
        scim_id = world.a_ids("User")[0]
        patch = {
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "Replace", "path": path, "value": value}],
        }
        for method, url, payload, touched in (
            ("POST", "/Users", body, None),
            ("PATCH", f"/Users/{scim_id}", patch, scim_id),
        ):
            try:
                send(world, method, url, payload, touched=touched)
            except AssertionError as exc:
                failures.append(f"{attribute} ({len(value)} characters), {method}: {exc}")
    assert not failures, "\n\n".join(failures)
