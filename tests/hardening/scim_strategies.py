"""Hypothesis strategies for hostile SCIM input: Entra-shaped documents and their mutations.

Most generated requests are *nearly* right (an Entra body with one or two things wrong), since
those reach the deepest code; the rest are garbage of every kind.
"""

import json
import re
import string
import uuid

from hypothesis import strategies as st

from .conftest import ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA

# --- scalars -------------------------------------------------------------------------------

# Text that stresses encodings, collation and length limits (NUL, RTL marks, emoji, long
# runs). Safe in a URL: used for paths and query strings too.
odd_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\u202e\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
            "💥" * 10,
            "Ω" * 300,
            "x" * 256,
            "x" * 4096,
            "' OR '1'='1",
            '" or "1"="1',
            "%",
            "_",
            "\\",
            "<script>alert(1)</script>",
            "${jndi:ldap://x}",
            "../../etc/passwd",
            "NaN",
            "True",
            "False",
        ]
    ),
)

# Text PostgreSQL cannot store: a lone UTF-16 surrogate (json.dumps writes it as the escape
# "\ud800", which is how it arrives) and NUL.
UNSTORABLE = ["\ud800", "a\udfffb", "\udc00x", "\x00", "a\x00b"]
# Text whose case-folded form is longer than itself (userName_key is userName.casefold()).
FOLDS_LONGER = ["ß" * 128, "ß" * 200, "ﬃ" * 90, "İ" * 200, "ŉ" * 130]
# One character above each column limit of members/models.py and directory_sync/models.py
# (20, 128, 254, 255, 256, 500), and far above.
COLUMN_LIMITS = [20, 128, 254, 255, 256, 500]
overlong_text = st.builds(
    lambda limit, factor: "x" * (limit * factor + 1),
    st.sampled_from(COLUMN_LIMITS),
    st.sampled_from([1, 4, 20]),
)
hostile_text = st.one_of(st.sampled_from(UNSTORABLE), st.sampled_from(FOLDS_LONGER), overlong_text)
# Text for JSON bodies: everything above (surrogates cannot be sent in a URL by the client).
body_text = st.one_of(odd_text, hostile_text)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    body_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(body_text, st.sampled_from(["value", "type", "$ref"])), children, max_size=4
        ),
    ),
    max_leaves=12,
)

string_booleans = st.sampled_from(["True", "False", "true", "false", "TRUE", True, False])
any_boolean = st.one_of(string_booleans, st.sampled_from(["yes", "no", "1", "0", "", 1, 0, None]))

# Valid Saudi mobile numbers (the product document's example format) and broken ones.
valid_phones = st.builds(
    lambda prefix, rest: f"+9665{prefix}{rest:07d}",
    st.sampled_from("0345689"),
    st.integers(min_value=0, max_value=9_999_999),
)
phones = st.one_of(
    valid_phones,
    valid_phones.map(lambda p: p.replace("+966", "00966")),
    valid_phones.map(lambda p: p[4:]),  # no country code
    valid_phones.map(lambda p: p[:-3]),  # too short
    st.text(alphabet="+0123456789 -()", max_size=25),
    body_text,
)
user_names = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(alphabet=string.ascii_letters + string.digits + "._-+", min_size=1, max_size=20),
    st.sampled_from(["contoso.com", "Contoso.COM", "fabrikam.onmicrosoft.com"]),
)
emails = st.one_of(user_names, body_text)


# A reference to an existing resource, resolved against the live id pool right before the
# request is sent (tests/hardening/test_scim_fuzz.py `resolve`). Drawing an index instead of
# sampling the pool keeps every draw independent of database state, so Hypothesis can replay
# and shrink a failing example.
REF = re.compile(r"@@ref(\d+)@@")
refs = st.integers(min_value=0, max_value=999).map(lambda n: f"@@ref{n}@@")


def resolve(value, pool: list[str]):
    """Replace every ``@@refN@@`` in ``value`` (recursively) with ``pool[N % len(pool)]``, and
    every ``@@uniq@@`` with a fresh random token (so creates do not collide by accident)."""
    if isinstance(value, str):
        value = value.replace("@@uniq@@", uuid.uuid4().hex[:12])
        if not pool:
            return REF.sub(lambda m: str(uuid.UUID(int=int(m.group(1)))), value)
        return REF.sub(lambda m: pool[int(m.group(1)) % len(pool)], value)
    if isinstance(value, list):
        return [resolve(v, pool) for v in value]
    if isinstance(value, dict):
        return {resolve(k, pool): resolve(v, pool) for k, v in value.items()}
    return value


def unique_user_name(tag: str = "") -> st.SearchStrategy[str]:
    """A user name that will not collide with earlier examples (creates mostly succeed)."""
    return st.just(f"{tag}@@uniq@@@contoso.com")


# --- documents -----------------------------------------------------------------------------


def manager_values() -> st.SearchStrategy:
    ref = st.one_of(refs, refs, st.uuids().map(str), body_text)
    return st.one_of(
        ref.map(lambda v: [{"$ref": None, "value": v}]),
        ref.map(lambda v: {"value": v}),
        ref,
        st.just(""),
        json_values,
    )


def enterprise_extension() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {},
        optional={
            "employeeNumber": st.one_of(body_text, json_values),
            "department": st.one_of(
                st.sampled_from(["Engineering", "Head Office/Engineering/Platform", "HR"]),
                body_text,
            ),
            "manager": manager_values(),
        },
    )


def user_documents() -> st.SearchStrategy[dict]:
    """An Entra-shaped user body with a unique userName; optional parts vary."""
    return st.fixed_dictionaries(
        {
            "schemas": st.sampled_from(
                [
                    [USER_SCHEMA, ENTERPRISE],
                    [USER_SCHEMA],
                    [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:unknown:2.0:User"],
                ]
            ),
            "userName": unique_user_name(),
            "active": any_boolean,
            "phoneNumbers": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["mobile", "work", "Mobile"]), "value": phones}
                ),
                min_size=1,
                max_size=2,
            ),
        },
        optional={
            "externalId": st.one_of(st.uuids().map(str), body_text, st.none()),
            "displayName": st.one_of(body_text, st.none()),
            "name": st.fixed_dictionaries(
                {}, optional={"givenName": body_text, "familyName": body_text}
            ),
            "emails": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["work", "home"]), "value": emails},
                    optional={"primary": any_boolean},
                ),
                max_size=2,
            ),
            "title": body_text,
            "addresses": st.lists(
                st.fixed_dictionaries(
                    {"type": st.just("work")},
                    optional={"country": body_text, "locality": body_text},
                ),
                max_size=1,
            ),
            ENTERPRISE: enterprise_extension(),
            "meta": st.just({"resourceType": "User"}),
            "roles": st.just([]),
            "id": st.uuids().map(str),
        },
    )


def group_documents() -> st.SearchStrategy[dict]:
    member_ref = st.one_of(refs, refs, refs, st.uuids().map(str), body_text)
    return st.fixed_dictionaries(
        {
            "schemas": st.sampled_from(
                [
                    [GROUP_SCHEMA],
                    [
                        GROUP_SCHEMA,
                        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
                    ],
                ]
            ),
            "displayName": st.one_of(st.uuids().map(lambda u: f"Group {u.hex[:8]}"), body_text),
        },
        optional={
            "externalId": st.one_of(st.uuids().map(str), body_text, st.none()),
            "members": st.lists(
                st.fixed_dictionaries({"value": member_ref}, optional={"$ref": st.none()}),
                max_size=3,
            ),
            "meta": st.just({"resourceType": "Group"}),
        },
    )


# Every attribute Beem stores, as (where in a user document, how to set it). A hostile value
# goes into one of them in an otherwise valid Entra body, so the request reaches the apply.
HOSTILE_USER_FIELDS = [
    "userName",
    "externalId",
    "displayName",
    "name.givenName",
    "name.familyName",
    "title",
    "emails",
    "phoneNumbers",
    "addresses",
    "employeeNumber",
    "department",
    "nickName",
    "urn:ietf:params:scim:schemas:extension:unknown:2.0:User",
    # Neither a work email nor a mobile number: nothing Beem can identify a member by.
    "no identifier",
]
# Case-folding expansions and over-long local parts in an email address.
hostile_emails = st.one_of(
    st.sampled_from(FOLDS_LONGER).map(lambda t: f"{t}@contoso.com"),
    st.sampled_from([250, 254, 300, 5000]).map(lambda n: "x" * (n - 12) + "@contoso.com"),
    st.sampled_from(UNSTORABLE).map(lambda t: f"a{t}@contoso.com"),
)


def set_attribute(doc: dict, where: str, value: str) -> dict:
    """Set one of HOSTILE_USER_FIELDS of a user document to ``value``."""
    if where == "no identifier":
        doc.pop("emails", None)
        doc.pop("phoneNumbers", None)
    elif where == "name.givenName" or where == "name.familyName":
        doc.setdefault("name", {})[where.split(".")[1]] = value
    elif where == "emails":
        doc["emails"] = [{"type": "work", "value": value, "primary": True}]
    elif where == "phoneNumbers":
        doc["phoneNumbers"] = [{"type": "mobile", "value": value}]
    elif where == "addresses":
        doc["addresses"] = [{"type": "work", "country": value}]
    elif where in ("employeeNumber", "department"):
        doc.setdefault(ENTERPRISE, {})[where] = value
    else:
        doc[where] = value
    return doc


@st.composite
def hostile_user_documents(draw) -> dict:
    """A valid Entra user body with one stored (or ignored) attribute set to text Beem cannot
    store as sent: unstorable, longer than its column, or longer once case-folded."""
    doc = {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": "h@@uniq@@@contoso.com",
        "externalId": "@@uniq@@",
        "active": draw(st.sampled_from(["True", "False", True])),
        "displayName": "Hostile",
        "emails": [{"type": "work", "value": "h@@uniq@@@contoso.com", "primary": True}],
        "phoneNumbers": [{"type": "mobile", "value": draw(valid_phones)}],
        ENTERPRISE: {"department": "Engineering"},
    }
    where = draw(st.sampled_from(HOSTILE_USER_FIELDS), label="attribute")
    value = draw(hostile_emails if where == "emails" else hostile_text, label="value")
    if where == "userName" and draw(st.booleans(), label="as an email"):
        value = draw(hostile_emails)
    return set_attribute(doc, where, value)


def hostile_user_patches() -> st.SearchStrategy[dict]:
    """A PATCH setting one supported path (or an ignored attribute) to hostile text, with a
    path, path-less, or with the hostile text in the path itself."""
    path = st.sampled_from(
        [
            "userName",
            "externalId",
            "displayName",
            "title",
            "name.givenName",
            "name.familyName",
            'emails[type eq "work"].value',
            'phoneNumbers[type eq "mobile"].value',
            'addresses[type eq "work"].country',
            f"{ENTERPRISE}:employeeNumber",
            f"{ENTERPRISE}:department",
        ]
    )
    with_path = st.builds(
        lambda p, v: [{"op": "Replace", "path": p, "value": v}], path, hostile_text
    )
    path_less = st.builds(
        lambda key, v: [{"op": "replace", "value": {key: v}}],
        st.sampled_from(["displayName", "name.givenName", "nickName", f"{ENTERPRISE}:department"]),
        hostile_text,
    )
    ignored_with_change = st.builds(
        lambda v: [
            {"op": "Replace", "path": "title", "value": "Changed @@uniq@@"},
            {"op": "Add", "value": {"nickName": v}},
        ],
        st.sampled_from(UNSTORABLE),
    )
    in_path = st.builds(
        lambda t: [{"op": "Replace", "path": f'emails[type eq "{t}"].value', "value": "x"}],
        st.sampled_from(UNSTORABLE),
    )
    return st.one_of(with_path, with_path, path_less, ignored_with_change, in_path).map(
        lambda operations: {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations,
        }
    )


hostile_group_documents = st.builds(
    lambda where, value: (
        {"schemas": [GROUP_SCHEMA], "displayName": "Group @@uniq@@"} | {where: value}
    ),
    st.sampled_from(["displayName", "externalId", "description"]),
    hostile_text,
)


@st.composite
def mutated(draw, documents: st.SearchStrategy[dict]) -> object:
    """Take a good document and break it: drop, retype, or add keys; or replace it entirely."""
    doc = draw(documents)
    how = draw(st.sampled_from(["keep", "drop", "retype", "add", "nest", "replace"]))
    if how == "keep" or not doc:
        return doc
    keys = sorted(doc)
    if how == "drop":
        doc.pop(draw(st.sampled_from(keys)))
    elif how == "retype":
        doc[draw(st.sampled_from(keys))] = draw(json_values)
    elif how == "add":
        doc[draw(st.one_of(body_text, st.sampled_from(USER_KEYS)))] = draw(json_values)
    elif how == "nest":
        doc[draw(st.sampled_from(keys))] = draw(deep_json)
    else:
        return draw(json_values)
    return doc


deep_json = st.integers(min_value=1, max_value=200).map(
    lambda depth: json.loads("[" * depth + "1" + "]" * depth)
)

USER_KEYS = [
    "userName",
    "externalId",
    "active",
    "displayName",
    "name",
    "emails",
    "phoneNumbers",
    "title",
    "addresses",
    ENTERPRISE,
    "schemas",
    "id",
    "meta",
    "members",
    "name.givenName",
    f"{ENTERPRISE}:department",
]

# --- PATCH ---------------------------------------------------------------------------------

USER_PATHS = [
    "userName",
    "displayName",
    "active",
    "externalId",
    "title",
    "name",
    "name.givenName",
    "name.familyName",
    "emails",
    'emails[type eq "work"].value',
    'emails[type eq "home"].value',
    'emails[type eq "work"]',
    'emails[value eq "a@contoso.com"]',
    'emails[type eq "work" and primary eq true].value',
    "phoneNumbers",
    'phoneNumbers[type eq "mobile"].value',
    'phoneNumbers[type eq "work"].value',
    'addresses[type eq "work"].country',
    'addresses[type eq "work"].locality',
    f"{ENTERPRISE}:employeeNumber",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:manager",
    f"{ENTERPRISE}:manager.value",
    f"{ENTERPRISE}.department",
    f"{USER_SCHEMA}:userName",
    f"{USER_SCHEMA}:name.givenName",
    "id",
    "meta",
    "meta.created",
    "schemas",
    "members",
    "roles",
    "password",
]
GROUP_PATHS = [
    "displayName",
    "externalId",
    "members",
    "members.value",
    'members[value eq "@@ref0@@"]',
    'members[value eq "@@ref1@@"]',
    'members[value eq "not-a-uuid"]',
    'members[display eq "x"]',
    "members[value pr]",
    "id",
    "meta",
    "schemas",
    f"{GROUP_SCHEMA}:displayName",
]
ODD_PATHS = [
    "",
    " ",
    ".",
    "..",
    "[",
    "]",
    "[]",
    "emails[",
    "emails]",
    "emails[type eq work].value",
    'emails[type xx "work"].value',
    'emails[type eq "work"',
    'emails[type eq "work"]]',
    "name..givenName",
    "a.b.c.d.e.f",
    "urn:",
    "urn:ietf:params:scim:schemas:extension:unknown:2.0:User:x",
    f"{ENTERPRISE}:",
    f"{ENTERPRISE}:manager.value.value",
    "userName\x00",
    "ÜserNäme",
    "x" * 1000,
    'members[value eq "a" or value eq "b"]',
    'members[not(value eq "a")]',
]
ops = st.one_of(
    st.sampled_from(
        [
            "add",
            "Add",
            "ADD",
            "replace",
            "Replace",
            "remove",
            "Remove",
            "aDd",
            "copy",
            "move",
            "test",
        ]
    ),
    st.sampled_from(["", "delete", "upsert"]),
    json_values,
)


def patch_operations(paths: list[str]) -> st.SearchStrategy[dict]:
    path = st.one_of(st.sampled_from(paths), st.sampled_from(ODD_PATHS), body_text)
    member_ref = st.one_of(refs, refs, st.uuids().map(str), body_text)
    value = st.one_of(
        json_values,
        body_text,
        any_boolean,
        phones,
        emails,
        st.lists(st.fixed_dictionaries({"value": member_ref}, optional={"$ref": st.none()})),
        manager_values(),
        st.fixed_dictionaries(
            {},
            optional={
                "displayName": body_text,
                "name.givenName": body_text,
                "active": any_boolean,
                f"{ENTERPRISE}:employeeNumber": body_text,
                f"{ENTERPRISE}:manager": manager_values(),
                'emails[type eq "work"].value': emails,
                "members": json_values,
                "userName": st.one_of(body_text, st.just("")),
            },
        ),
    )
    return st.fixed_dictionaries(
        {"op": ops}, optional={"path": path, "value": value, "extra": json_values}
    ).map(
        lambda op: (
            {k: v for k, v in op.items() if k != "extra"}
            | ({"unexpected": op["extra"]} if "extra" in op else {})
        )
    )


def patch_bodies(paths: list[str]) -> st.SearchStrategy:
    operations = st.lists(patch_operations(paths), min_size=0, max_size=4)
    good = st.builds(
        lambda o: {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": o},
        operations,
    )
    return st.one_of(
        good,
        good,
        good,
        st.builds(lambda o: {"Operations": o}, operations),
        st.builds(lambda o: {"schemas": ["urn:x"], "operations": o}, operations),
        st.builds(
            lambda v: {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": v,
            },
            json_values,
        ),
        json_values,
    )


# --- filters and query strings ---------------------------------------------------------------

FILTER_ATTRIBUTES = [
    "userName",
    "USERNAME",
    "externalId",
    "id",
    'emails[type eq "work"].value',
    "emails.value",
    "emails",
    "displayName",
    "members",
    "manager",
    "title",
    "active",
    "name.givenName",
    "meta.lastModified",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:manager",
    "userName.x",
    "",
    "1",
    "user_name",
    "document",
    "organization_id",
]
FILTER_OPERATORS = [
    "eq",
    "EQ",
    "Eq",
    "ne",
    "co",
    "sw",
    "ew",
    "pr",
    "gt",
    "ge",
    "lt",
    "le",
    "xx",
    "like",
    "=",
    "==",
    "in",
]
INJECTIONS = [
    '" or "1"="1',
    "x' OR '1'='1",
    '"; DROP TABLE directory_sync_directoryrecord; --',
    '") or ("1"="1',
    "%",
    "%%",
    "_",
    "\\",
    '\\"',
    "*",
    "' union select * from auth_user --",
    '" or userName pr or "',
    "\x00",
    # JSON-style escapes a filter parser may decode into a lone surrogate or NUL.
    "\\ud800",
    "a\\udfffb",
    "\\u0000",
    "ß" * 200,
]


def filter_values() -> st.SearchStrategy[str]:
    quoted = st.one_of(odd_text, st.sampled_from(INJECTIONS), refs).map(
        lambda v: '"' + v.replace('"', '\\"') + '"'
    )
    raw = st.one_of(
        st.sampled_from(INJECTIONS),
        st.sampled_from(["true", "false", "null", "1", "1.5", "-0", "1e309", '"unterminated']),
        odd_text,
    )
    return st.one_of(quoted, quoted, raw)


def filters() -> st.SearchStrategy[str]:
    term = st.one_of(
        st.builds(
            lambda a, o, v: f"{a} {o} {v}",
            st.sampled_from(FILTER_ATTRIBUTES),
            st.sampled_from(FILTER_OPERATORS),
            filter_values(),
        ),
        st.sampled_from(FILTER_ATTRIBUTES).map(lambda a: f"{a} pr"),
    )
    return (
        st.recursive(
            term,
            lambda inner: st.one_of(
                st.builds(lambda a, b: f"{a} and {b}", inner, inner),
                st.builds(lambda a, b: f"{a} or {b}", inner, inner),
                st.builds(lambda a, b: f"{a} AND {b}", inner, inner),
                inner.map(lambda a: f"not ({a})"),
                inner.map(lambda a: f"({a})"),
                inner.map(lambda a: f"({a}"),
            ),
            max_leaves=4,
        )
        | odd_text
    )


query_numbers = st.one_of(
    st.integers(min_value=-5, max_value=5),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from(["", "abc", "1.5", "1e3", " 1", "0x10", "١", "NaN", "-0"]),
)
attribute_lists = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "userName",
                "members",
                "displayName",
                "emails",
                "emails.value",
                f"{ENTERPRISE}:manager",
                "id",
                "meta",
                "schemas",
                "nonexistent",
            ]
        ),
        odd_text,
    ),
    max_size=4,
).map(",".join)
