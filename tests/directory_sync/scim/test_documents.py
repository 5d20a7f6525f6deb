"""The pure parts of the SCIM layer: canonical documents, Entra quirks, PATCH planning."""

import pytest

from directory_sync.scim import documents, patch
from directory_sync.scim.errors import ScimError

from .conftest import ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA, entra_user

BOSS = "7d9f3f9e-4c61-4b0e-9a3e-2f0c8b1d5a10"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ([{"$ref": "https://x/Users/" + BOSS, "value": BOSS}], {"value": BOSS}),
        ({"value": BOSS}, {"value": BOSS}),
        (BOSS, {"value": BOSS}),
        ("", None),
        ({"value": ""}, None),
        ([], None),
        (None, None),
    ],
)
def test_manager_value_accepts_every_entra_form(raw, expected):
    assert documents.manager_value(raw) == expected


def test_manager_value_refuses_a_non_id():
    with pytest.raises(ScimError) as raised:
        documents.manager_value("Bob")
    assert raised.value.scim_type == "invalidValue"


def test_user_document_keeps_the_whole_schema_but_no_password_and_real_booleans():
    payload = entra_user(
        active="False", nickName="Al", locale="en-US", password="x", favouriteColour="blue"
    )
    payload["name"]["formatted"] = "Alice Wong"
    payload[ENTERPRISE]["costCenter"] = "CC1"

    document = documents.user_document_from_payload(payload)

    assert document["active"] is False
    assert set(document) == {
        "schemas",
        "userName",
        "externalId",
        "active",
        "displayName",
        "nickName",
        "locale",
        "title",
        "name",
        "emails",
        "phoneNumbers",
        "addresses",
        ENTERPRISE,
    }
    assert document["name"] == {
        "formatted": "Alice Wong",
        "familyName": "Wong",
        "givenName": "Alice",
    }
    assert document[ENTERPRISE] == {
        "employeeNumber": "E-1001",
        "costCenter": "CC1",
        "department": "Platform",
    }
    assert document["schemas"] == [USER_SCHEMA, ENTERPRISE]


def test_user_mirror_follows_the_document():
    document = documents.user_document_from_payload(entra_user(user_name="Ali@Contoso.com"))
    document[ENTERPRISE]["manager"] = {"value": BOSS}

    mirror = documents.user_mirror(document)

    assert mirror["user_name"] == "Ali@Contoso.com"
    assert mirror["user_name_key"] == "ali@contoso.com"
    assert mirror["work_email"] == "ali@contoso.com"
    assert str(mirror["manager_scim_id"]) == BOSS
    assert mirror["active"] is True


def test_user_patch_apply_handles_string_booleans_and_value_filter_paths():
    document = documents.user_document_from_payload(entra_user(mobile=None))

    result = patch.user_patch_apply(
        document,
        [
            {"op": "Replace", "path": "active", "value": "False"},
            {
                "op": "Add",
                "path": 'phoneNumbers[type eq "mobile"].value',
                "value": "+966512345678",
            },
        ],
    )

    assert result["active"] is False
    assert result["phoneNumbers"] == [{"value": "+966512345678", "type": "mobile"}]
    assert document["active"] is True  # the input document is not modified


def test_group_patch_plan_reads_entra_member_operations():
    operations = [
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": BOSS}]},
        {"op": "Remove", "path": "members", "value": [{"value": BOSS}]},
        {"op": "remove", "path": f'members[value eq "{BOSS}"]'},
        {"op": "Replace", "path": "displayName", "value": "New"},
    ]

    plan = patch.group_patch_plan(operations)

    # Consecutive removes are one change (one statement under the group's lock).
    assert [(m.op, m.ids) for m in plan.member_ops] == [("add", (BOSS,)), ("remove", (BOSS, BOSS))]
    assert plan.changes == {"displayName": "New"}


def test_group_document_drops_members_and_unknown_schemas():
    document, members = documents.group_document_from_payload(
        {
            "schemas": [GROUP_SCHEMA, "http://schemas.microsoft.com/x/Group"],
            "displayName": "Sales",
            "members": [{"value": BOSS}],
            "meta": {"resourceType": "Group"},
        }
    )

    assert document == {"schemas": [GROUP_SCHEMA], "displayName": "Sales"}
    assert members == [BOSS]


# --- the usual create body, checked by hand == scim2-models -----------------------------------


def _engine_document(payload: dict) -> dict:
    model = documents.UserModel.model_validate(payload, scim_policy=documents.ENTRA_POLICY)
    return documents.canonical_user(model)


def _without(body: dict, *keys: str) -> dict:
    return {k: v for k, v in body.items() if k not in keys}


USUAL_BODIES = [
    entra_user(),
    entra_user(active="False"),
    entra_user(active="true"),
    entra_user(active=True),
    entra_user(active=False),
    entra_user(mobile=None),
    entra_user(roles=[]),
    _without(entra_user(), "active"),
    _without(entra_user(), "externalId", "title", "displayName"),
    _without(entra_user(), ENTERPRISE) | {"schemas": [USER_SCHEMA]},
    entra_user() | {"schemas": [ENTERPRISE, USER_SCHEMA]},
    entra_user() | {"name": {"givenName": "Alice"}},
    entra_user() | {"name": {}},
    entra_user() | {"emails": []},
    entra_user() | {"emails": [{"type": "work", "primary": True}]},
    entra_user()
    | {"emails": [{"value": "a@contoso.com"}, {"value": "b@contoso.com", "type": "home"}]},
    entra_user() | {"phoneNumbers": [{"type": "work", "value": "+966512345678", "primary": False}]},
    entra_user() | {"addresses": [{"type": "work"}]},
    entra_user() | {ENTERPRISE: {}},
    entra_user() | {ENTERPRISE: {"department": "Sales"}},
    # Entra's default mappings for a non-gallery app (tests/directory_sync/scim/entra_defaults.py).
    entra_user(nickName="Al", preferredLanguage="en-US", locale="en-US", userType="Member"),
    entra_user() | {"name": {"givenName": "Alice", "formatted": "Alice Wong"}},
    entra_user() | {"emails": [{"type": "work", "value": "a@contoso.com", "display": "A"}]},
    entra_user()
    | {
        "addresses": [
            {
                "type": "work",
                "country": "SA",
                "locality": "Riyadh",
                "streetAddress": "1 King Fahd Rd",
                "region": "Riyadh",
                "postalCode": "12211",
                "formatted": "1 King Fahd Rd, Riyadh",
            }
        ]
    },
    entra_user()
    | {
        "phoneNumbers": [
            {"type": "work", "value": "+966112345678"},
            {"type": "fax", "value": "+966112345679"},
            {"type": "mobile", "value": "+966512345678"},
        ]
    },
    entra_user() | {ENTERPRISE: {"costCenter": "CC1", "division": "D", "organization": "O"}},
]


@pytest.mark.parametrize("body", USUAL_BODIES)
def test_usual_create_body_gives_what_the_model_gives(body):
    payload, _given, _manager = documents._prepare_user_payload(body)
    fast = documents._usual_user_document(payload)
    assert fast is not None, body
    assert fast == _engine_document(payload)
    assert list(fast) == list(_engine_document(payload))


UNUSUAL_BODIES = [
    entra_user(profileUrl="https://contoso.com/alice"),
    entra_user(password="secret"),
    entra_user(nickName=""),
    entra_user() | {"addresses": [{"type": "work", "locality": 7}]},
    entra_user() | {"name": {"givenName": "Alice", "nick": "Al"}},
    entra_user(active="maybe"),
    entra_user(active=None),
    entra_user(active=1),
    entra_user(roles=[{"value": "admin"}]),
    entra_user(displayName=""),
    entra_user(title=7),
    entra_user(userName=["x"]),
    entra_user() | {"username": "lower@contoso.com"},
    entra_user() | {"name": {"givenName": ""}},
    entra_user() | {"emails": [{"type": "Work", "value": "a@contoso.com"}]},
    entra_user() | {"emails": [{"type": "work", "value": "a@contoso.com", "primary": "True"}]},
    entra_user() | {"emails": {"type": "work", "value": "a@contoso.com"}},
    entra_user() | {ENTERPRISE.lower(): {"department": "Sales"}},
    _without(entra_user(), "schemas"),
    entra_user() | {"schemas": [USER_SCHEMA]},
    entra_user() | {"schemas": [USER_SCHEMA, "urn:example:other"]},
]


@pytest.mark.parametrize("body", UNUSUAL_BODIES)
def test_anything_unusual_goes_through_the_model(body):
    payload, _given, _manager = documents._prepare_user_payload(body)
    assert documents._usual_user_document(payload) is None
