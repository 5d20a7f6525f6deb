"""The whole User and Group schema, handled the same in every write form (issue 15).

Over HTTP with real tokens: every attribute is stored and read back alike whether it arrives
in a POST, a PUT, a PATCH with a path (plain or value-filter) or a path-less PATCH; attributes
outside the advertised schema are ignored in every form; the password is accepted and never
kept; new text is bounded like the rest.
"""

import pytest

from directory_sync.scim.document_checks import MAX_TEXT

from .conftest import (
    ENTERPRISE,
    GROUP_SCHEMA,
    LIST_SCHEMA,
    assert_scim_error,
    create_user,
    entra_user,
    patch_body,
    record_of,
)
from .entra_defaults import set_attribute, value_at

ATTRIBUTES = [
    ("name.formatted", "Alice Wong"),
    ("name.middleName", "J"),
    ("name.honorificPrefix", "Dr."),
    ("nickName", "Al"),
    ("profileUrl", "https://contoso.com/alice"),
    ("userType", "Employee"),
    ("preferredLanguage", "en-US"),
    ("locale", "ar-SA"),
    ("timezone", "Asia/Riyadh"),
    ('addresses[type eq "work"].streetAddress', "1 King Fahd Road"),
    ('addresses[type eq "work"].locality', "Riyadh"),
    ('addresses[type eq "work"].region', "Riyadh Province"),
    ('addresses[type eq "work"].postalCode', "12211"),
    ('addresses[type eq "home"].formatted', "Villa 7"),
    ('phoneNumbers[type eq "work"].value', "+966112345678"),
    ('phoneNumbers[type eq "fax"].value', "+966112345679"),
    ('emails[type eq "other"].value', "SMTP:alice@contoso.com"),
    ('ims[type eq "skype"].value', "alice.wong"),
    ('photos[type eq "photo"].value', "https://contoso.com/alice.png"),
    ('entitlements[type eq "license"].value', "E5"),
    ('roles[type eq "app"].value', "Reader"),
    (f"{ENTERPRISE}:costCenter", "CC-7"),
    (f"{ENTERPRISE}:organization", "Contoso"),
    (f"{ENTERPRISE}:division", "Cloud"),
]
BOUNDED = ["nickName", 'addresses[type eq "work"].locality', "name.formatted"]
FORMS = ["post", "put", "patch-path", "patch-pathless"]
IGNORED = ["favouriteColour", "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:badge"]


CUSTOM = "urn:ietf:params:scim:schemas:extension:Custom:2.0:User"
IGNORED = ["favouriteColour", "name.nick", f"{CUSTOM}:badge"]


def _body_with(path: str, value) -> dict:
    body = entra_user()
    if path.startswith(f"{CUSTOM}:"):
        body["schemas"].append(CUSTOM)
        body[CUSTOM] = {path[len(CUSTOM) + 1 :]: value}
    else:
        set_attribute(body, path, value)
    return body


def _write(scim, form: str, path: str, value):
    """Write ``value`` at ``path`` in ``form``: (response, SCIM id of the user)."""
    if form == "post":
        response = scim.post("/Users", json=_body_with(path, value))
        return response, response.json().get("id")
    user = create_user(scim)
    if form == "put":
        response = scim.put(f"/Users/{user['id']}", json=_body_with(path, value))
    else:
        operation = {"op": "Replace", "path": path, "value": value}
        if form == "patch-pathless":
            operation = {"op": "Replace", "value": {path: value}}
        response = scim.patch(f"/Users/{user['id']}", json=patch_body(operation))
    return response, user["id"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("path,value", ATTRIBUTES, ids=[row[0] for row in ATTRIBUTES])
def test_every_attribute_is_kept_alike_in_every_write_form(scim, form, path, value):
    response, scim_id = _write(scim, form, path, value)

    assert response.status_code in (200, 201), response.content
    assert value_at(response.json(), path) == value
    assert value_at(scim.get(f"/Users/{scim_id}").json(), path) == value
    assert value_at(record_of(scim_id).document, path) == value


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("path", IGNORED)
def test_an_attribute_outside_the_schema_is_ignored_in_every_write_form(scim, form, path):
    response, scim_id = _write(scim, form, path, "x")

    assert response.status_code in (200, 201), response.content
    document = record_of(scim_id).document
    assert "favouriteColour" not in document and CUSTOM not in document
    assert "nick" not in document["name"]
    assert CUSTOM not in response.json() and "favouriteColour" not in response.json()


@pytest.mark.parametrize("form", FORMS)
def test_the_password_is_accepted_and_never_kept_or_returned(scim, form):
    response, scim_id = _write(scim, form, "password", "S3cret!pass")

    assert response.status_code in (200, 201), response.content
    assert "password" not in response.json()
    assert "password" not in scim.get(f"/Users/{scim_id}").json()
    assert "S3cret" not in str(record_of(scim_id).document)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "path", ["nickName", 'addresses[type eq "work"].locality', "name.formatted"]
)
def test_new_text_is_bounded_in_every_write_form(scim, form, path):
    response, scim_id = _write(scim, form, path, "x" * (MAX_TEXT + 1))

    body = assert_scim_error(response, 400, "invalidValue")
    assert f"longer than {MAX_TEXT} characters" in body["detail"]


def test_new_multi_valued_attributes_are_bounded(scim, settings):
    settings.BEEM_SCIM_MAX_MULTI_VALUED = 3
    body = entra_user(ims=[{"type": "skype", "value": f"a{i}"} for i in range(4)])

    body = assert_scim_error(scim.post("/Users", json=body), 400, "invalidValue")
    assert "ims holds 4 values" in body["detail"]


def test_manager_without_the_enterprise_urn_sets_the_manager(scim):
    boss = create_user(
        scim, user_name="omar@contoso.com", external_id="omar", mobile="+966512345671"
    )
    user = create_user(scim)

    response = scim.patch(
        f"/Users/{user['id']}",
        json=patch_body({"op": "Replace", "path": "manager", "value": boss["id"]}),
    )
    assert response.status_code == 200, response.content
    assert str(record_of(user["id"]).manager_scim_id) == boss["id"]

    response = scim.patch(
        f"/Users/{user['id']}", json=patch_body({"op": "Replace", "value": {"manager": ""}})
    )
    assert response.status_code == 200, response.content
    assert record_of(user["id"]).manager_scim_id is None


def test_group_members_may_carry_display(scim):
    user = create_user(scim)
    member = {"value": user["id"], "display": "Alice Wong", "displayName": "Alice Wong"}

    response = scim.post(
        "/Groups",
        json={"schemas": [GROUP_SCHEMA], "displayName": "Sales", "members": [member]},
    )
    assert response.status_code == 201, response.content
    group = response.json()
    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Add", "path": "members", "value": [member]}),
    )
    assert response.status_code in (200, 204), response.content
    members = scim.get(f"/Groups/{group['id']}").json()["members"]
    assert [m["value"] for m in members] == [user["id"]]


def test_a_trailing_slash_is_the_same_endpoint(scim):
    user = create_user(scim)

    for path in ("/Users/", "/Groups/"):
        response = scim.get(path)
        assert response.status_code == 200, (path, response.content)
        assert response.json()["schemas"] == [LIST_SCHEMA]
    assert scim.get(f"/Users/{user['id']}/").json()["id"] == user["id"]
    response = scim.patch(
        f"/Users/{user['id']}/",
        json=patch_body({"op": "Replace", "path": "title", "value": "Lead"}),
    )
    assert response.json()["title"] == "Lead"
    response = scim.post("/Groups/", json={"schemas": [GROUP_SCHEMA], "displayName": "Ops"})
    assert response.status_code == 201, response.content
    assert scim.delete(f"/Groups/{response.json()['id']}/").status_code == 204
