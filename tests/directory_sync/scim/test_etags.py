"""ETags (RFC 7644 §3.14): ``ETag: W/"<version>"`` equal to ``meta.version`` on every User and
Group answer, changing with every accepted change; ``If-Match`` (412 when stale) and
``If-None-Match`` (304 when current)."""

import pytest

from directory_sync.models import ChangeEvent, DirectoryMembership

from .conftest import (
    ERROR_SCHEMA,
    assert_scim_error,
    create_group,
    create_user,
    entra_user,
    patch_body,
    record_of,
)


def _tag(response) -> str:
    return response["ETag"]


def test_users_carry_an_etag_equal_to_meta_version_that_follows_every_change(scim):
    posted = scim.post("/Users", json=entra_user())
    user = posted.json()
    path = f"/Users/{user['id']}"

    got = scim.get(path)
    put = scim.put(path, json=entra_user(title="Lead"))
    patched = scim.patch(
        path, json=patch_body({"op": "replace", "path": "title", "value": "Chief"})
    )
    listed = scim.get("/Users").json()["Resources"][0]

    assert [_tag(r) for r in (posted, got, put, patched)] == [
        'W/"1"',
        'W/"1"',
        'W/"2"',
        'W/"3"',
    ]
    for response in (posted, got, put, patched):
        assert response.json()["meta"]["version"] == _tag(response)
    assert listed["meta"]["version"] == 'W/"3"' == f'W/"{record_of(user["id"]).version}"'


def test_a_group_member_patch_changes_the_version_and_answers_its_etag(scim):
    user = create_user(scim)
    group = create_group(scim)
    path = f"/Groups/{group['id']}"
    add = patch_body({"op": "add", "path": "members", "value": [{"value": user["id"]}]})
    remove = patch_body({"op": "remove", "path": f'members[value eq "{user["id"]}"]'})

    added = scim.patch(path, json=add)
    again = scim.patch(path, json=add)  # nothing changes: the version stays
    got = scim.get(path)
    removed = scim.patch(path, json=remove)

    assert group["meta"]["version"] == 'W/"1"'
    assert (added.status_code, _tag(added)) == (204, 'W/"2"')
    assert (again.status_code, _tag(again)) == (204, 'W/"2"')
    assert _tag(got) == got.json()["meta"]["version"] == 'W/"2"'
    assert _tag(removed) == 'W/"3"'


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_stale_if_match_is_412_and_changes_nothing(scim, method):
    user = create_user(scim)
    path = f"/Users/{user['id']}"
    scim.patch(path, json=patch_body({"op": "replace", "path": "title", "value": "Chief"}))
    events = ChangeEvent.objects.count()
    bodies = {
        "put": entra_user(title="Stale"),
        "patch": patch_body({"op": "replace", "path": "title", "value": "Stale"}),
        "delete": None,
    }

    response = getattr(scim, method)(path, json=bodies[method], HTTP_IF_MATCH='W/"1"')

    body = assert_scim_error(response, 412)
    assert body["schemas"] == [ERROR_SCHEMA] and 'W/"2"' in body["detail"]
    assert record_of(user["id"]).version == 2 and record_of(user["id"]).deleted_at is None
    assert ChangeEvent.objects.count() == events


def test_a_stale_if_match_on_a_group_member_patch_is_412(scim):
    user = create_user(scim)
    group = create_group(scim)
    scim.patch(
        f"/Groups/{group['id']}", json=patch_body({"op": "replace", "value": {"displayName": "B"}})
    )

    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "add", "path": "members", "value": [{"value": user["id"]}]}),
        HTTP_IF_MATCH='W/"1"',
    )

    assert_scim_error(response, 412)
    assert not DirectoryMembership.objects.filter(group_record__scim_id=group["id"]).exists()
    assert record_of(group["id"]).version == 2


@pytest.mark.parametrize("header", ['W/"1"', '"1"', "*", 'W/"7", W/"1"'])
def test_a_current_or_wildcard_if_match_lets_every_write_through(scim, header):
    user = create_user(scim)
    path = f"/Users/{user['id']}"

    patched = scim.patch(
        path,
        json=patch_body({"op": "replace", "path": "title", "value": "Chief"}),
        HTTP_IF_MATCH=header,
    )
    put = scim.put(path, json=entra_user(title="Lead"), HTTP_IF_MATCH=_tag(patched))
    deleted = scim.delete(path, HTTP_IF_MATCH=_tag(put) if header != "*" else "*")

    assert (patched.status_code, put.status_code, deleted.status_code) == (200, 200, 204)


def test_an_if_match_that_is_no_version_of_ours_is_412(scim):
    user = create_user(scim)

    response = scim.delete(f"/Users/{user['id']}", HTTP_IF_MATCH='W/"abc"')

    assert_scim_error(response, 412)


def test_if_match_on_an_unknown_id_is_still_404(scim):
    response = scim.delete("/Users/5a4f6c1e-0000-4000-8000-000000000000", HTTP_IF_MATCH='W/"1"')

    assert_scim_error(response, 404)


def test_if_none_match_with_the_current_version_is_304_without_a_body(scim):
    user = create_user(scim)
    path = f"/Users/{user['id']}"

    current = scim.get(path, HTTP_IF_NONE_MATCH='W/"1"')
    stale = scim.get(path, HTTP_IF_NONE_MATCH='W/"0"')
    wildcard = scim.get(path, HTTP_IF_NONE_MATCH="*")

    assert current.status_code == 304 and current.content == b""
    assert _tag(current) == 'W/"1"'
    assert stale.status_code == 200 and stale.json()["id"] == user["id"]
    assert wildcard.status_code == 304


def test_requests_without_the_headers_are_answered_as_before(scim):
    """Entra sends neither header: its writes are never refused for a version."""
    user = create_user(scim)
    path = f"/Users/{user['id']}"
    scim.put(path, json=entra_user(title="Lead"))

    stale_free = scim.patch(path, json=patch_body({"op": "replace", "path": "title", "value": "X"}))
    got = scim.get(path)

    assert stale_free.status_code == 200 and got.status_code == 200
    assert got.json()["title"] == "X"
