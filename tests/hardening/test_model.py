"""Model-based test of the whole sync (issue 12, "Proof").

A Hypothesis state machine plays Entra ID against one organization per example: it creates
users (some of them matching members created in Beem, which must be linked), updates every
mapped attribute (names, displayName, title, work email, mobile, country, employeeNumber,
department in plain and structure format, manager), swaps and rotates mobile numbers and
emails between users, disables (``active`` "False", a string), re-enables, hard-deletes,
creates, renames, fills, empties and deletes groups, and stops and reactivates sync from the
admin pages. Every request goes over HTTP with a token from ``/o/token/``; the machine keeps a
plain-Python model of the directory from the 2xx answers only (a 4xx leaves it unchanged).

Whenever it settles (a rule, and the end of every example) it waits until no change event is
pending and compares Beem with the projection of the model:

- SCIM reads answer what was written; deleted users and groups are 404s and purged;
- one member per active user, none for a disabled one, and no other members than the Beem
  members no user has matched; a user matching a Beem member is linked to it; a re-enabled
  user has a new member;
- every member's fields, departments, manager and groups are the user's;
- each directory group's Beem group has its name and its active users' members;
- every resource still exists: with its owner, or, once the owner is deleted, unassigned
  (or with the owner's manager under that deletion rule); no event failed, no review item.

The operations stay inside what converges to one answer whatever order the apply job sees
them in: identifiers are fresh or exchanged between users (a swap or rotation ends with every
value unique); a user is re-enabled only after its disabling settled (a disable and enable
that collapse into one apply rightly keep the member); a user that matched a Beem member
keeps its identifiers until that link settled.

Three machines, so a failure names its kind: ``SyncMachine`` (the lifecycle above),
``SwapMachine`` (plus exchanges and rotations of identifiers between users whose members
exist, and a departure whose mobile and email a new user takes before it is applied) and
``DoorMachine`` (plus writes Beem cannot apply as sent: unstorable text, values over their
column, userNames that outgrow their column once case-folded, a user without an identifier;
each a 4xx that changes nothing or a 2xx that is applied).

The tests marked ``postgres``/``redis`` run a real Celery worker on a private Redis against
PostgreSQL (tests/directory_sync/test_worker.py); ``test_model_embedded`` runs the same
machines on the embedded default (eager apply). ``BEEM_MODEL_PROFILE=long`` runs many more and
longer examples with fresh randomness (``BEEM_MODEL_EXAMPLES`` sets how many),
``BEEM_MODEL_SHRINK=1`` shrinks a failure to a minimal sequence (slow with the worker).
"""

import functools
import itertools
import os
import time
import uuid
from dataclasses import dataclass, field

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from directory_sync.models import ChangeEvent, DirectoryRecord, ReviewItem, SyncSettings
from directory_sync.redispatch import change_events_redispatch
from members import selectors as member_selectors
from members import services as member_services
from members.models import DepartmentMembership, Group, GroupMembership, Member, Resource

# A real worker on a private Redis, as the engine's worker tests start it.
from tests.directory_sync.test_worker import private_redis, publish_to, worker  # noqa: F401

from .conftest import (
    ENTERPRISE,
    GROUP_SCHEMA,
    MODEL_COUNTER,
    PATCH_SCHEMA,
    SETTINGS_FORM,
    USER_SCHEMA,
    tenant_create,
)

PROFILE = os.environ.get("BEEM_MODEL_PROFILE", "ci")
PROFILES = {
    # CI: reproducible and a few minutes at most on a 2-core machine.
    "ci": {"max_examples": 6, "stateful_step_count": 30, "derandomize": True},
    "long": {"max_examples": 200, "stateful_step_count": 80, "derandomize": False},
}
# BEEM_MODEL_EXAMPLES overrides the profile's number of examples per machine.
EXAMPLES = os.environ.get("BEEM_MODEL_EXAMPLES")
# Shrinking replays a failing sequence many times (seconds each with the worker): off unless
# asked for (BEEM_MODEL_SHRINK=1); the failure then shows the whole sequence as it ran.
SHRINK = os.environ.get("BEEM_MODEL_SHRINK") == "1"
# How long a settle waits for the queue, and after how long it sweeps events still pending as
# beat's redispatch would (a wake-up may be lost; production sweeps every minute).
DRAIN_TIMEOUT = 120.0
SWEEP_AFTER = 15.0
SETTLE_EVERY = 8

_numbers = itertools.count(1)
MOBILE_PREFIX = "0345689"
PLAIN_DEPARTMENTS = ["Engineering", "Sales", "Support", "HR", " Finance "]
STRUCTURE_DEPARTMENTS = [
    "Head Office",
    "Head Office/Engineering",
    "Head Office/Engineering/Platform",
    "Branch/Engineering",
    " Branch / Sales ",
]


def _fresh() -> int:
    return next(_numbers)


def fresh_phone() -> str:
    """A valid Saudi mobile number in E.164 that no other user or member has."""
    n = _fresh()
    return f"+9665{MOBILE_PREFIX[n % 7]}{(os.getpid() * 7919 + n) % 10_000_000:07d}"


def fresh_email() -> str:
    return f"mail{_fresh()}.{uuid.uuid4().hex[:6]}@contoso.com"


def phone_as_sent(phone: str, style: int) -> str:
    """One of the forms Entra may hold a number in; Beem stores the E.164 form."""
    national = phone[4:]
    if style == 1:
        return f"+966 {national[:2]} {national[2:5]} {national[5:]}"
    if style == 2:
        return "00966" + national
    return phone


def email_as_sent(email: str, style: int) -> str:
    if style == 1:
        return email.upper()
    if style == 2:
        local, domain = email.split("@")
        return f"{local.capitalize()}@{domain.title()}"
    return email


text = st.text(
    alphabet=st.characters(categories=("L", "N"), include_characters=" -.'"),
    min_size=1,
    max_size=24,
).filter(lambda s: s.strip())


def clean(value: str | None, limit: int) -> str:
    """What the member holds for a directory text attribute."""
    return (value or "").strip()[:limit]


# --- the model --------------------------------------------------------------------------------


@dataclass(eq=False)
class User:
    scim_id: str
    user_name: str
    external_id: str
    active: bool = True
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    title: str | None = None
    email: str | None = None  # as sent
    phone: str | None = None  # E.164
    phone_sent: str | None = None
    country: str | None = None
    employee_number: str | None = None
    department: str | None = None
    manager: str | None = None  # SCIM id, may name a deleted user
    # Beem side, learnt when settling.
    member_id: int | None = None
    former_member_ids: set = field(default_factory=set)
    link_seed: str | None = None  # a Beem member this user must be linked to
    disable_settled: bool = True
    managers_since_settle: set = field(default_factory=set)

    def identifiers(self) -> tuple[str | None, str | None]:
        return self.phone, (self.email or "").lower() or None


@dataclass
class Seed:
    """A member created in Beem before sync; no user has matched it yet (or one just did)."""

    key: str
    member_id: int
    phone: str
    email: str
    linked_by: str | None = None  # SCIM id of the user


@dataclass
class GroupModel:
    scim_id: str
    name: str
    members: set = field(default_factory=set)  # user SCIM ids


@dataclass
class ResourceModel:
    """Whose resource is it: ("user", scim id), ("seed", key), None (unassigned), or moving
    (its owners were deleted since the last settle; ``origins`` are their SCIM ids)."""

    pk: int
    owner: tuple | None
    origins: set = field(default_factory=set)


@dataclass
class Env:
    """How the test runs the apply job: a real worker (wait for it) or eagerly."""

    real_worker: bool


def _step(method):
    """Mark the machine as inside a step, so teardown knows whether a step failed."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        self.in_step = True
        result = method(self, *args, **kwargs)
        self.in_step = False
        self.unsettled += 1
        MODEL_COUNTER["steps"] += 1
        MODEL_COUNTER["rules"][method.__name__] += 1
        return result

    return wrapped


class SyncMachine(RuleBasedStateMachine):
    env = Env(real_worker=False)

    def __init__(self):
        super().__init__()
        self.tenant = None
        self.in_step = False
        self.unsettled = 0
        self.users: dict[str, User] = {}
        self.deleted_users: set[str] = set()
        self.groups: dict[str, GroupModel] = {}
        self.deleted_groups: set[str] = set()
        self.seeds: dict[str, Seed] = {}
        self.resources: list[ResourceModel] = []
        self.stopped = self.stopped_recently = False
        self.log: list[str] = []
        # Deleted users' managers since the last settle (where their resources may have gone).
        self.deleted_managers: dict[str, set] = {}

    # --- set-up -------------------------------------------------------------------------------

    @initialize(
        identify_by=st.sampled_from(["phone", "email"]),
        department_format=st.sampled_from(["plain_name", "structure_string"]),
        deletion_rule=st.sampled_from(["delete_directly", "delete_transfer_to_manager"]),
        seeds=st.integers(min_value=1, max_value=3),
        users=st.integers(min_value=2, max_value=4),
        data=st.data(),
    )
    def set_up(self, identify_by, department_format, deletion_rule, seeds, users, data):
        self.in_step = True
        MODEL_COUNTER["examples"] += 1
        n = _fresh()
        self.identify_by = identify_by
        self.department_format = department_format
        self.deletion_rule = deletion_rule
        sync_fields = {
            **SETTINGS_FORM,
            "identify_by": identify_by,
            "department_format": department_format,
            "deletion_rule": deletion_rule,
        }
        self.tenant = tenant_create(
            slug=f"model-{os.getpid()}-{n}", name=f"Model {n}", **sync_fields
        )
        self.organization = self.tenant.organization
        admin = member_services.administrator_ensure(
            organization=self.organization, username=f"admin-{n}@model", password="model pw 42"
        )
        self.admin = Client()
        self.admin.force_login(admin.user)
        for i in range(seeds):
            phone, email = fresh_phone(), fresh_email()
            member = member_services.member_create(
                organization=self.organization, phone=phone, email=email, display_name=f"Seed {i}"
            )
            key = f"seed{i}"
            self.seeds[key] = Seed(key=key, member_id=member.pk, phone=phone, email=email)
            for j in range(1 + i % 2):
                resource = member_services.resource_create(
                    organization=self.organization,
                    kind="document",
                    name=f"Doc {i}.{j}",
                    owner=member,
                )
                self.resources.append(ResourceModel(pk=resource.pk, owner=("seed", key)))
        self.log.append(f"set up: identify by {identify_by}, {department_format}, {deletion_rule}")
        # A few users whose members exist before the random steps begin, so exchanges and
        # departures meet applied members from the first step on.
        for _ in range(users):
            self._create_user(data)
        if data.draw(st.booleans(), label="one disabled"):
            # Settled disabled: eligible for re-enabling from the first step on.
            first = next(iter(self.users.values()))
            if first.link_seed is None:
                self.patch_user(first, [{"op": "Replace", "path": "active", "value": "False"}])
                first.active = False
                self.remove_owner(first)
        self.settle_and_check()
        self.in_step = False

    # --- helpers ------------------------------------------------------------------------------

    def call(self, method: str, path: str, body=None, *, expect: tuple[int, ...]):
        response = self.tenant.request(method, path, body)
        self.log.append(f"{method} {path} {body!r:.300} -> {response.status_code}")
        recent = "\n".join(["", "requests before:", *self.log[-20:-1]])
        assert response.status_code < 500, (
            f"{method} {path} with {body!r:.500} answered {response.status_code}: "
            f"{response.content[:800]!r}{recent}"
        )
        assert response.status_code in expect, (
            f"{method} {path} with {body!r:.500} answered {response.status_code}, expected "
            f"{expect}: {response.content[:800]!r}{recent}"
        )
        return response

    def patch_user(self, user: User, operations: list[dict]):
        body = {"schemas": [PATCH_SCHEMA], "Operations": operations}
        return self.call("PATCH", f"/Users/{user.scim_id}", body, expect=(200, 204))

    def patch_group(self, group: GroupModel, operations: list[dict], *, expect=(200, 204)):
        body = {"schemas": [PATCH_SCHEMA], "Operations": operations}
        return self.call("PATCH", f"/Groups/{group.scim_id}", body, expect=expect)

    def active_users(self, *, settled_link: bool = False) -> list[User]:
        return [
            u
            for u in self.users.values()
            if u.active and not (settled_link and u.link_seed is not None)
        ]

    def unlinked_seeds(self) -> list[Seed]:
        return [s for s in self.seeds.values() if s.linked_by is None]

    def identifier_taken(self, user: User) -> bool:
        phone, email = user.identifiers()
        for other in self.active_users():
            if other is user:
                continue
            if (phone and other.phone == phone) or (email and other.identifiers()[1] == email):
                return True
        return False

    def user_body(self, user: User) -> dict:
        body = {
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": user.external_id,
            "userName": user.user_name,
            "active": "True",
        }
        for key, value in (("displayName", user.display_name), ("title", user.title)):
            if value is not None:
                body[key] = value
        name = {
            k: v
            for k, v in (("givenName", user.given_name), ("familyName", user.family_name))
            if v is not None
        }
        if name:
            body["name"] = name
        if user.email:
            body["emails"] = [{"primary": True, "type": "work", "value": user.email}]
        if user.phone_sent:
            body["phoneNumbers"] = [{"type": "mobile", "value": user.phone_sent}]
        if user.country:
            body["addresses"] = [{"type": "work", "country": user.country}]
        enterprise = {
            k: v
            for k, v in (
                ("employeeNumber", user.employee_number),
                ("department", user.department),
            )
            if v is not None
        }
        if enterprise:
            body[ENTERPRISE] = enterprise
        return body

    def remove_owner(self, user: User) -> None:
        """The user's member is about to be deleted: its resources move (model side)."""
        for resource in self.resources:
            if resource.owner == ("user", user.scim_id):
                resource.owner, resource.origins = ("moving",), {user.scim_id}

    def _draw_department(self, data) -> str:
        pool = (
            PLAIN_DEPARTMENTS if self.department_format == "plain_name" else STRUCTURE_DEPARTMENTS
        )
        return data.draw(st.sampled_from(pool), label="department")

    # --- users --------------------------------------------------------------------------------

    @precondition(lambda self: self.tenant is not None and not self.stopped)
    @rule(data=st.data())
    @_step
    def create_user(self, data):
        self._create_user(data)

    def _create_user(self, data) -> None:
        n = _fresh()
        user = User(
            scim_id="",
            user_name=f"u{n}.{uuid.uuid4().hex[:4]}@contoso.onmicrosoft.com",
            external_id=str(uuid.uuid4()),
        )
        seed = None
        if self.unlinked_seeds() and data.draw(st.booleans(), label="match a Beem member"):
            seed = data.draw(st.sampled_from(self.unlinked_seeds()), label="seed")
        style = data.draw(st.integers(0, 2), label="identifier style")
        if self.identify_by == "phone":
            user.phone = seed.phone if seed else fresh_phone()
            with_email = data.draw(st.booleans(), label="with email")
            if with_email:
                same = seed is not None and data.draw(st.booleans(), label="seed's email")
                user.email = email_as_sent(seed.email if same else fresh_email(), style)
        else:
            user.email = email_as_sent(seed.email if seed else fresh_email(), style)
            if data.draw(st.booleans(), label="with mobile"):
                same = seed is not None and data.draw(st.booleans(), label="seed's mobile")
                user.phone = seed.phone if same else fresh_phone()
        if user.phone:
            user.phone_sent = phone_as_sent(user.phone, style)
        for attribute in ("display_name", "given_name", "family_name", "title", "country"):
            if data.draw(st.booleans(), label=f"with {attribute}"):
                setattr(user, attribute, data.draw(text, label=attribute))
        if data.draw(st.booleans(), label="with employeeNumber"):
            user.employee_number = str(data.draw(st.integers(1, 99999), label="employeeNumber"))
        if data.draw(st.booleans(), label="with department"):
            user.department = self._draw_department(data)
        response = self.call("POST", "/Users", self.user_body(user), expect=(201,))
        user.scim_id = response.json()["id"]
        if seed is not None:
            seed.linked_by = user.scim_id
            user.link_seed = seed.key
            for resource in self.resources:
                if resource.owner == ("seed", seed.key):
                    resource.owner = ("user", user.scim_id)
        self.users[user.scim_id] = user

    @precondition(lambda self: not self.stopped and self.users)
    @rule(data=st.data())
    @_step
    def update_attributes(self, data):
        """Replace or remove one to three plain attributes, with paths or path-less."""
        user = data.draw(st.sampled_from(sorted(self.users.values(), key=lambda u: u.user_name)))
        attributes = data.draw(
            st.lists(
                st.sampled_from(
                    [
                        "displayName",
                        "name.givenName",
                        "name.familyName",
                        "title",
                        'addresses[type eq "work"].country',
                        f"{ENTERPRISE}:employeeNumber",
                        f"{ENTERPRISE}:department",
                    ]
                ),
                min_size=1,
                max_size=3,
                unique=True,
            ),
            label="attributes",
        )
        model_key = {
            "displayName": "display_name",
            "name.givenName": "given_name",
            "name.familyName": "family_name",
            "title": "title",
            'addresses[type eq "work"].country': "country",
            f"{ENTERPRISE}:employeeNumber": "employee_number",
            f"{ENTERPRISE}:department": "department",
        }
        # Entra's path-less replace carries dotted and URN keys (entra-contract.md #5).
        path_less = data.draw(st.booleans(), label="path-less replace")
        operations, values, path_less_value = [], {}, {}
        for path in attributes:
            current = getattr(user, model_key[path])
            in_value = path_less and not path.startswith("addresses")
            remove = current is not None and data.draw(st.booleans(), label=f"remove {path}")
            if remove and in_value:
                remove = False
            if remove:
                value = None
            elif path.endswith(":department"):
                value = self._draw_department(data)
            elif path.endswith(":employeeNumber"):
                value = str(data.draw(st.integers(1, 99999)))
            else:
                value = data.draw(text, label=path)
            values[path] = value
            op = data.draw(st.sampled_from(["Replace", "replace", "Add"]), label="op")
            if value is None:
                operations.append(
                    {"op": data.draw(st.sampled_from(["Remove", "remove"])), "path": path}
                )
            elif in_value:
                path_less_value[path] = value
            else:
                operations.append({"op": op, "path": path, "value": value})
        if path_less_value:
            operations.append({"op": "replace", "value": path_less_value})
        self.patch_user(user, operations)
        for path, value in values.items():
            setattr(user, model_key[path], value)

    @precondition(lambda self: not self.stopped and self.active_users(settled_link=True))
    @rule(data=st.data())
    @_step
    def change_email_or_mobile(self, data):
        """A fresh work email or mobile number (or none, where the user keeps an identifier)."""
        user = data.draw(st.sampled_from(self.active_users(settled_link=True)), label="user")
        style = data.draw(st.integers(0, 2), label="style")
        which = data.draw(st.sampled_from(["email", "mobile"]), label="which")
        remove = data.draw(st.booleans(), label="remove")
        if which == "email":
            path = 'emails[type eq "work"].value'
            if remove and (self.identify_by == "email" or not user.email):
                remove = False
            if remove:
                self.patch_user(user, [{"op": "Remove", "path": path}])
                user.email = None
            else:
                user.email = email_as_sent(fresh_email(), style)
                self.patch_user(user, [{"op": "Replace", "path": path, "value": user.email}])
        else:
            path = 'phoneNumbers[type eq "mobile"].value'
            if remove and (self.identify_by == "phone" or not user.phone or not user.email):
                remove = False
            if remove:
                self.patch_user(user, [{"op": "Remove", "path": path}])
                user.phone = user.phone_sent = None
            else:
                user.phone = fresh_phone()
                user.phone_sent = phone_as_sent(user.phone, style)
                self.patch_user(user, [{"op": "Replace", "path": path, "value": user.phone_sent}])

    @precondition(lambda self: not self.stopped and len(self.users) >= 2)
    @rule(data=st.data())
    @_step
    def set_manager(self, data):
        users = sorted(self.users.values(), key=lambda u: u.user_name)
        user = data.draw(st.sampled_from(users), label="user")
        manager = data.draw(st.sampled_from([u for u in users if u is not user]), label="manager")
        shape = data.draw(st.sampled_from(["list", "object", "bare"]), label="shape")
        value = {
            "list": [{"$ref": None, "value": manager.scim_id}],
            "object": {"value": manager.scim_id},
            "bare": manager.scim_id,
        }[shape]
        self.patch_user(user, [{"op": "Add", "path": f"{ENTERPRISE}:manager", "value": value}])
        user.manager = manager.scim_id
        user.managers_since_settle.add(manager.scim_id)

    @precondition(lambda self: not self.stopped and any(u.manager for u in self.users.values()))
    @rule(data=st.data())
    @_step
    def clear_manager(self, data):
        user = data.draw(st.sampled_from([u for u in self.users.values() if u.manager]))
        if data.draw(st.booleans(), label="as remove"):
            operations = [{"op": "Remove", "path": f"{ENTERPRISE}:manager"}]
        else:
            operations = [{"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": ""}]
        self.patch_user(user, operations)
        user.manager = None

    @precondition(lambda self: not self.stopped and self.active_users(settled_link=True))
    @rule(data=st.data())
    @_step
    def disable(self, data):
        user = data.draw(st.sampled_from(self.active_users(settled_link=True)), label="user")
        if data.draw(st.booleans(), label="path-less"):
            operations = [{"op": "Replace", "value": {"active": "False"}}]
        else:
            operations = [{"op": "Replace", "path": "active", "value": "False"}]
        self.patch_user(user, operations)
        user.active = False
        user.disable_settled = False
        self.remove_owner(user)

    @precondition(
        lambda self: (
            not self.stopped
            and any(
                not u.active and u.disable_settled and not self.identifier_taken(u)
                for u in self.users.values()
            )
        )
    )
    @rule(data=st.data())
    @_step
    def re_enable(self, data):
        candidates = [
            u
            for u in self.users.values()
            if not u.active and u.disable_settled and not self.identifier_taken(u)
        ]
        user = data.draw(st.sampled_from(candidates), label="user")
        self.patch_user(user, [{"op": "Replace", "path": "active", "value": "True"}])
        user.active = True

    @precondition(
        lambda self: not self.stopped and any(u.link_seed is None for u in self.users.values())
    )
    @rule(data=st.data())
    @_step
    def hard_delete(self, data):
        user = data.draw(
            st.sampled_from([u for u in self.users.values() if u.link_seed is None]), label="user"
        )
        self.delete_user(user)

    def delete_user(self, user: User) -> None:
        self.call("DELETE", f"/Users/{user.scim_id}", expect=(204,))
        del self.users[user.scim_id]
        self.deleted_users.add(user.scim_id)
        self.deleted_managers[user.scim_id] = user.managers_since_settle | (
            {user.manager} if user.manager else set()
        )
        for group in self.groups.values():
            group.members.discard(user.scim_id)
        if user.active:
            self.remove_owner(user)

    # --- groups -------------------------------------------------------------------------------

    @precondition(
        lambda self: self.tenant is not None and not self.stopped and len(self.groups) < 5
    )
    @rule(data=st.data())
    @_step
    def create_group(self, data):
        name = f"Group {_fresh()} " + data.draw(text, label="name").strip()
        body = {
            "schemas": [
                GROUP_SCHEMA,
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
            ],
            "displayName": name,
            "externalId": str(uuid.uuid4()),
        }
        response = self.call("POST", "/Groups", body, expect=(201,))
        scim_id = response.json()["id"]
        self.groups[scim_id] = GroupModel(scim_id=scim_id, name=name)

    def _group(self, data) -> GroupModel:
        return data.draw(st.sampled_from(sorted(self.groups.values(), key=lambda g: g.name)))

    def _user_ids(self, data, *, min_size=1) -> list[str]:
        return data.draw(
            st.lists(
                st.sampled_from(sorted(self.users)), min_size=min_size, max_size=4, unique=True
            ),
            label="users",
        )

    @precondition(lambda self: not self.stopped and self.groups)
    @rule(data=st.data())
    @_step
    def rename_group(self, data):
        group = self._group(data)
        name = f"Group {_fresh()} " + data.draw(text, label="name").strip()
        if data.draw(st.booleans(), label="path-less"):
            self.patch_group(group, [{"op": "Replace", "value": {"displayName": name}}])
        else:
            self.patch_group(group, [{"op": "Replace", "path": "displayName", "value": name}])
        group.name = name

    @precondition(lambda self: not self.stopped and self.groups and self.users)
    @rule(data=st.data())
    @_step
    def add_group_members(self, data):
        group = self._group(data)
        ids = self._user_ids(data)
        value = [{"$ref": None, "value": i} for i in ids]
        self.patch_group(
            group,
            [{"op": data.draw(st.sampled_from(["Add", "add"])), "path": "members", "value": value}],
        )
        group.members.update(ids)

    @precondition(lambda self: not self.stopped and self.groups and self.users)
    @rule(data=st.data())
    @_step
    def remove_group_members(self, data):
        group = self._group(data)
        ids = self._user_ids(data)
        if data.draw(st.booleans(), label="by filter"):
            operations = [{"op": "Remove", "path": f'members[value eq "{i}"]'} for i in ids]
        else:
            operations = [{"op": "Remove", "path": "members", "value": [{"value": i} for i in ids]}]
        self.patch_group(group, operations)
        group.members.difference_update(ids)

    @precondition(lambda self: not self.stopped and self.groups and self.users)
    @rule(data=st.data())
    @_step
    def replace_group_members(self, data):
        group = self._group(data)
        ids = self._user_ids(data, min_size=0)
        self.patch_group(
            group,
            [{"op": "Replace", "path": "members", "value": [{"value": i} for i in ids]}],
        )
        group.members = set(ids)

    @precondition(lambda self: not self.stopped and self.groups)
    @rule(data=st.data())
    @_step
    def delete_group(self, data):
        group = self._group(data)
        self.call("DELETE", f"/Groups/{group.scim_id}", expect=(204,))
        del self.groups[group.scim_id]
        self.deleted_groups.add(group.scim_id)

    # --- stop and reactivate ------------------------------------------------------------------

    # Once per settle at most: rules without arguments are drawn far more often than others.
    @precondition(
        lambda self: self.tenant is not None and not self.stopped and not self.stopped_recently
    )
    @rule()
    @_step
    def stop_sync(self):
        response = self.admin.post(reverse("directory_sync:sync_stop"), {"confirm": "on"})
        assert response.status_code == 302, response.content[:500]
        self.stopped = self.stopped_recently = True
        self.log.append("admin: stop")
        # Entra is refused from now on, whatever it sends.
        self.call("GET", '/Users?filter=userName eq "x@contoso.com"', expect=(401,))
        if self.users:
            user = sorted(self.users.values(), key=lambda u: u.user_name)[0]
            body = {
                "schemas": [PATCH_SCHEMA],
                "Operations": [{"op": "Replace", "path": "displayName", "value": "Stopped"}],
            }
            self.call("PATCH", f"/Users/{user.scim_id}", body, expect=(401,))
        self.call("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "x"}, expect=(401,))

    @precondition(lambda self: self.stopped)
    @rule()
    @_step
    def reactivate_sync(self):
        response = self.admin.post(reverse("directory_sync:sync_reactivate"), {"confirm": "on"})
        assert response.status_code == 302, response.content[:500]
        assert SyncSettings.objects.get(organization=self.organization).status == "active"
        self.stopped = False
        self.log.append("admin: reactivate")
        probe = f'/Users?filter=userName eq "{uuid.uuid4()}"'
        assert self.call("GET", probe, expect=(200,)).json()["totalResults"] == 0

    # --- settling and the projection ----------------------------------------------------------

    # Waiting for the worker costs a second or two: settle every few steps, not at random.
    @precondition(lambda self: self.tenant is not None and self.unsettled >= SETTLE_EVERY)
    @rule(data=st.data())
    @_step
    def settle(self, data):
        self.settle_and_check()
        self.unsettled = -1
        self.stopped_recently = False
        members = [u for u in self.users.values() if u.active and u.member_id]
        if members and data.draw(st.booleans(), label="give a resource"):
            user = data.draw(st.sampled_from(sorted(members, key=lambda u: u.user_name)))
            resource = member_services.resource_create(
                organization=self.organization,
                kind="channel",
                name=f"Channel {_fresh()}",
                owner=Member.objects.get(pk=user.member_id),
            )
            self.resources.append(ResourceModel(pk=resource.pk, owner=("user", user.scim_id)))

    def teardown(self):
        if self.tenant is None:
            return
        if self.in_step:
            # A step failed: only let the queue drain so the next example starts quiet.
            try:
                self.drain()
            except AssertionError:
                pass
            return
        self.settle_and_check()

    def drain(self) -> None:
        """Wait until no event of the organization is pending."""
        pending = ChangeEvent.objects.filter(
            organization=self.organization, status=ChangeEvent.Status.PENDING
        )
        if not self.env.real_worker:
            assert not pending.exists(), "events left pending by the eager apply"
            return
        started = time.monotonic()
        swept = False
        while pending.exists():
            elapsed = time.monotonic() - started
            if elapsed > SWEEP_AFTER and not swept:
                change_events_redispatch(organization=self.organization, older_than_seconds=0)
                MODEL_COUNTER["sweeps"] += 1
                swept = True
            assert elapsed < DRAIN_TIMEOUT, (
                f"{pending.count()} events still pending after {DRAIN_TIMEOUT}s"
            )
            time.sleep(0.1)

    def settle_and_check(self) -> None:
        self.drain()
        MODEL_COUNTER["settles"] += 1
        problems = self.problems()
        assert not problems, "\n".join(
            ["Beem differs from the directory model:", *problems, "", "requests:", *self.log[-60:]]
        )
        self.learn()

    # The projection -------------------------------------------------------------------------

    def problems(self) -> list[str]:
        org = self.organization
        problems = []
        for event in ChangeEvent.objects.filter(organization=org, status=ChangeEvent.Status.FAILED):
            problems.append(f"event failed: {event.kind} {event.label}: {event.reason}")
        for item in ReviewItem.objects.filter(organization=org, status=ReviewItem.Status.OPEN):
            problems.append(f"review item open: {item.kind}: {item.detail}")
        if not self.stopped:
            problems += self.scim_problems()

        records = {
            str(r.scim_id): r
            for r in DirectoryRecord.objects.filter(organization=org).select_related("member")
        }
        tombstones = [s for s, r in records.items() if r.deleted_at is not None]
        if tombstones:
            problems.append(f"tombstones not purged: {tombstones}")
        for scim_id in self.deleted_users | self.deleted_groups:
            if scim_id in records:
                problems.append(f"deleted resource {scim_id} still has a record")
        expected_ids = set(self.users) | set(self.groups)
        extra = set(records) - expected_ids - self.deleted_users - self.deleted_groups
        if extra:
            problems.append(f"records no 2xx created: {sorted(extra)}")

        # Members: one per active user, plus the Beem members nobody matched.
        members = {m.pk: m for m in Member.objects.filter(organization=org)}
        member_of: dict[str, int | None] = {}
        for user in self.users.values():
            record = records.get(user.scim_id)
            if record is None:
                problems.append(f"user {user.user_name}: no record")
                continue
            member_of[user.scim_id] = record.member_id
            if user.active and record.member_id is None:
                problems.append(f"user {user.user_name}: active but no member")
            if not user.active and record.member_id is not None:
                problems.append(f"user {user.user_name}: disabled but member {record.member_id}")
            if user.active and record.member_id in user.former_member_ids:
                problems.append(
                    f"user {user.user_name}: re-enabled but kept its old member {record.member_id}"
                )
            if user.link_seed is not None and user.active:
                seed = self.seeds[user.link_seed]
                if record.member_id != seed.member_id:
                    problems.append(
                        f"user {user.user_name} matches Beem member {seed.member_id} by "
                        f"{self.identify_by} but is linked to member {record.member_id}"
                    )
        linked = [m for m in member_of.values() if m is not None]
        if len(linked) != len(set(linked)):
            problems.append(f"two users share a member: {sorted(linked)}")
        unlinked = {s.member_id for s in self.unlinked_seeds()}
        for pk, member in members.items():
            if pk not in linked and pk not in unlinked:
                problems.append(
                    f"member {pk} ({member.display_name!r}, {member.phone}, {member.email}) "
                    "belongs to no active user and to no unmatched Beem member"
                )
        for pk in unlinked:
            member = members.get(pk)
            if member is None:
                problems.append(f"Beem member {pk} nobody matched was deleted")
            elif member.directory_managed:
                problems.append(f"Beem member {pk} nobody matched is marked directory-managed")

        group_of = {s: records[s].group_id for s in self.groups if s in records}
        for user in self.users.values():
            member = members.get(member_of.get(user.scim_id))
            if user.active and member is not None:
                problems += [
                    f"user {user.user_name}: {p}"
                    for p in self.member_problems(user, member, member_of, group_of)
                ]

        # Groups.
        beem_groups = {g.pk: g for g in Group.objects.filter(organization=org)}
        for scim_id, group in self.groups.items():
            group_id = group_of.get(scim_id)
            beem = beem_groups.get(group_id)
            if beem is None:
                problems.append(f"group {group.name!r}: no Beem group")
                continue
            if beem.name != group.name.strip()[:256]:
                problems.append(f"group {group.name!r}: Beem group is named {beem.name!r}")
            expected = {
                member_of[u]
                for u in group.members
                if u in self.users and self.users[u].active and member_of.get(u)
            }
            actual = set(
                GroupMembership.objects.filter(group_id=group_id).values_list(
                    "member_id", flat=True
                )
            )
            if expected != actual:
                problems.append(
                    f"group {group.name!r}: members {sorted(actual)}, expected {sorted(expected)}"
                )
        extra_groups = set(beem_groups) - set(group_of.values())
        if extra_groups:
            problems.append(f"Beem groups for no directory group: {sorted(extra_groups)}")

        problems += self.resource_problems(members, member_of)
        return problems

    def scim_problems(self) -> list[str]:
        problems = []
        for user in self.users.values():
            response = self.tenant.request("GET", f"/Users/{user.scim_id}")
            if response.status_code != 200:
                problems.append(f"GET user {user.user_name}: {response.status_code}")
                continue
            problems += [
                f"GET user {user.user_name}: {p}" for p in user_read_problems(user, response.json())
            ]
        for group in self.groups.values():
            response = self.tenant.request("GET", f"/Groups/{group.scim_id}")
            if response.status_code != 200:
                problems.append(f"GET group {group.name!r}: {response.status_code}")
                continue
            body = response.json()
            members = {m["value"] for m in body.get("members", [])}
            if body.get("displayName") != group.name or members != group.members:
                problems.append(
                    f"GET group {group.name!r}: {body.get('displayName')!r} with "
                    f"{sorted(members)}, expected {sorted(group.members)}"
                )
        for scim_id in sorted(self.deleted_users):
            status = self.tenant.request("GET", f"/Users/{scim_id}").status_code
            if status != 404:
                problems.append(f"GET deleted user {scim_id}: {status}")
        for scim_id in sorted(self.deleted_groups):
            status = self.tenant.request("GET", f"/Groups/{scim_id}").status_code
            if status != 404:
                problems.append(f"GET deleted group {scim_id}: {status}")
        return problems

    def member_problems(
        self, user: User, member: Member, member_of: dict, group_of: dict
    ) -> list[str]:
        problems = []
        expected = {
            "display_name": clean(user.display_name, 256),
            "given_name": clean(user.given_name, 128),
            "family_name": clean(user.family_name, 128),
            "phone": user.phone,
            "email": (user.email or "").lower() or None,
            "job_title": clean(user.title, 256),
            "country": clean(user.country, 128),
            "employee_number": clean(user.employee_number, 128),
            "directory_managed": True,
        }
        for key, value in expected.items():
            if getattr(member, key) != value:
                problems.append(f"{key} is {getattr(member, key)!r}, directory has {value!r}")
        manager = self.users.get(user.manager) if user.manager else None
        expected_manager = (
            member_of.get(manager.scim_id) if manager is not None and manager.active else None
        )
        if manager is user:
            expected_manager = None
        if member.manager_id != expected_manager:
            problems.append(f"manager is member {member.manager_id}, expected {expected_manager}")
        links = list(
            DepartmentMembership.objects.filter(member=member).select_related("department")
        )
        if self.department_format == "plain_name":
            actual = sorted(link.department.name for link in links)
            wanted = (
                [user.department.strip()] if user.department and user.department.strip() else []
            )
        else:
            actual = [
                [d.name for d in member_selectors.department_path(link.department)]
                for link in links
            ]
            parts = [p.strip() for p in (user.department or "").split("/") if p.strip()]
            wanted = [parts] if parts else []
            if member.department_display != Member.DepartmentDisplay.CURRENT_ONLY:
                problems.append(f"department display is {member.department_display!r}")
        if actual != wanted:
            problems.append(f"departments {actual}, directory has {wanted}")
        groups = set(
            GroupMembership.objects.filter(
                member=member, group__directory_managed=True
            ).values_list("group_id", flat=True)
        )
        wanted_groups = {
            group_of.get(g.scim_id) for g in self.groups.values() if user.scim_id in g.members
        }
        if groups != wanted_groups:
            problems.append(f"groups {sorted(groups)}, expected {sorted(wanted_groups)}")
        return problems

    def resource_problems(self, members: dict, member_of: dict) -> list[str]:
        problems = []
        actual = {r.pk: r for r in Resource.objects.filter(organization=self.organization)}
        if set(actual) != {r.pk for r in self.resources}:
            problems.append(
                f"resources {sorted(actual)}, expected {sorted(r.pk for r in self.resources)}"
            )
        for resource in self.resources:
            row = actual.get(resource.pk)
            if row is None:
                problems.append(f"resource {resource.pk} vanished")
                continue
            if resource.owner is None or resource.owner == ("moving",):
                allowed = {None}
                if resource.owner == ("moving",) and self.deletion_rule != "delete_directly":
                    allowed |= {member_of.get(s) for s in self.manager_closure(resource.origins)}
                if row.owner_id not in allowed:
                    problems.append(
                        f"resource {resource.pk} of a deleted member is owned by "
                        f"{row.owner_id}, expected one of {sorted(allowed, key=str)}"
                    )
                if row.owner_id is None and (
                    row.unassigned_at is None or not row.previous_owner_name
                ):
                    problems.append(f"resource {resource.pk} unassigned without a trace")
                continue
            kind, key = resource.owner
            owner = member_of.get(key) if kind == "user" else self.seeds[key].member_id
            if row.owner_id != owner:
                problems.append(f"resource {resource.pk} owned by {row.owner_id}, expected {owner}")
        return problems

    def manager_closure(self, origins: set) -> set:
        """The live users a deleted member's resources may have reached through managers."""
        seen, frontier = set(), set(origins)
        while frontier:
            scim_id = frontier.pop()
            user = self.users.get(scim_id)
            managers = set(user.managers_since_settle) if user else set()
            if user and user.manager:
                managers.add(user.manager)
            if user is None:
                managers |= self.deleted_managers.get(scim_id, set())
            for manager in managers - seen:
                seen.add(manager)
                frontier.add(manager)
        return {s for s in seen if s in self.users and self.users[s].active}

    def learn(self) -> None:
        """Take the Beem side the check just verified as the model's from now on."""
        records = dict(
            DirectoryRecord.objects.filter(organization=self.organization).values_list(
                "scim_id", "member_id"
            )
        )
        member_to_user = {}
        for user in self.users.values():
            member_id = records.get(uuid.UUID(user.scim_id))
            if user.member_id and user.member_id != member_id:
                user.former_member_ids.add(user.member_id)
            user.member_id = member_id
            if member_id:
                member_to_user[member_id] = user.scim_id
            user.disable_settled = True
            user.link_seed = None
            user.managers_since_settle = {user.manager} if user.manager else set()
        self.deleted_managers = {}
        owners = dict(
            Resource.objects.filter(organization=self.organization).values_list("pk", "owner_id")
        )
        seeds = {s.member_id: s.key for s in self.unlinked_seeds()}
        for resource in self.resources:
            owner = owners.get(resource.pk)
            if owner is None:
                resource.owner, resource.origins = None, set()
            elif owner in member_to_user:
                resource.owner, resource.origins = ("user", member_to_user[owner]), set()
            elif owner in seeds:
                resource.owner, resource.origins = ("seed", seeds[owner]), set()


class SwapMachine(SyncMachine):
    """The lifecycle plus identifier exchanges between users (issue 12, "must converge")."""

    def _exchange(self, users: list[User], which: str) -> None:
        """User i takes user i+1's value (the last takes the first's), one PATCH each, as
        Entra sends them: between two PATCHes, two users hold the same value."""
        if which == "mobile":
            values = [u.phone for u in users]
            path = 'phoneNumbers[type eq "mobile"].value'
        else:
            values = [u.email for u in users]
            path = 'emails[type eq "work"].value'
        rotated = values[1:] + values[:1]
        for user, value in zip(users, rotated, strict=True):
            sent = phone_as_sent(value, 1) if which == "mobile" else value
            self.patch_user(user, [{"op": "Replace", "path": path, "value": sent}])
            if which == "mobile":
                user.phone, user.phone_sent = value, sent
            else:
                user.email = value

    def _holders(self, which: str) -> list[User]:
        """Users whose member holds the value already (learnt when settling): exchanging
        values a pending create has not applied yet would collapse into that create."""
        attribute = "phone" if which == "mobile" else "email"
        return sorted(
            (u for u in self.members_applied() if getattr(u, attribute)),
            key=lambda u: u.user_name,
        )

    def members_applied(self) -> list[User]:
        return [u for u in self.active_users(settled_link=True) if u.member_id is not None]

    @precondition(
        lambda self: (
            not self.stopped
            and (len(self._holders("mobile")) >= 2 or len(self._holders("email")) >= 2)
        )
    )
    @rule(data=st.data())
    @_step
    def swap_identifiers(self, data):
        kinds = [k for k in ("mobile", "email") if len(self._holders(k)) >= 2]
        which = data.draw(st.sampled_from(kinds), label="which")
        users = data.draw(
            st.lists(st.sampled_from(self._holders(which)), min_size=2, max_size=3, unique=True),
            label="users",
        )
        self.log.append(f"exchange {which} between {[u.user_name for u in users]}")
        self._exchange(users, which)

    @precondition(
        lambda self: (
            not self.stopped
            and (len(self._holders("mobile")) >= 3 or len(self._holders("email")) >= 3)
        )
    )
    @rule(data=st.data())
    @_step
    def rotate_identifiers(self, data):
        """A→B, B→C, C→A (a chain of reassignments that ends where it began)."""
        kinds = [k for k in ("mobile", "email") if len(self._holders(k)) >= 3]
        which = data.draw(st.sampled_from(kinds), label="which")
        users = data.draw(
            st.lists(st.sampled_from(self._holders(which)), min_size=3, max_size=4, unique=True),
            label="users",
        )
        self.log.append(f"rotate {which} through {[u.user_name for u in users]}")
        self._exchange(users, which)

    @precondition(lambda self: not self.stopped and self.members_applied())
    @rule(data=st.data())
    @_step
    def rehire_with_same_identifiers(self, data):
        """A user leaves (disabled or deleted) and a new user arrives with their mobile and
        email before the departure is applied."""
        leaving = data.draw(
            st.sampled_from(sorted(self.members_applied(), key=lambda u: u.user_name)),
            label="user",
        )
        if data.draw(st.booleans(), label="delete"):
            self.delete_user(leaving)
        else:
            self.patch_user(leaving, [{"op": "Replace", "path": "active", "value": "False"}])
            leaving.active = False
            leaving.disable_settled = False
            self.remove_owner(leaving)
        n = _fresh()
        user = User(
            scim_id="",
            user_name=f"r{n}.{uuid.uuid4().hex[:4]}@contoso.onmicrosoft.com",
            external_id=str(uuid.uuid4()),
            display_name=f"Rehired {n}",
            email=leaving.email,
            phone=leaving.phone,
            phone_sent=leaving.phone_sent,
        )
        response = self.call("POST", "/Users", self.user_body(user), expect=(201,))
        user.scim_id = response.json()["id"]
        self.users[user.scim_id] = user


# Text PostgreSQL cannot store, and text whose case-folded form outgrows its column.
UNSTORABLE = ["\ud800", "a\udfffb", "\x00", "a\x00b"]
FOLDS_LONGER = ["ß" * 200, "ﬃ" * 100, "İ" * 200]


class DoorMachine(SyncMachine):
    """The lifecycle plus writes Beem cannot apply as sent (issue 12, "refused at the door"):
    each must be a 4xx that changes nothing, or a 2xx that is then applied (the model takes
    it as answered); a 2xx that is not applied shows as a difference when settling."""

    def attempt(self, method: str, path: str, body) -> object | None:
        """The JSON answer of a 2xx, None for a 4xx (never a 5xx, never a 401/404 here)."""
        response = self.call(method, path, body, expect=(200, 201, 204, 400, 409))
        if response.status_code >= 400:
            error = response.json()
            assert error.get("scimType"), f"{response.status_code} without scimType: {error}"
            return None
        return response.json() if response.content else {}

    @precondition(lambda self: not self.stopped and self.users)
    @rule(data=st.data())
    @_step
    def write_unstorable_or_overlong_attribute(self, data):
        user = data.draw(st.sampled_from(sorted(self.users.values(), key=lambda u: u.user_name)))
        attribute, model_key, limit = data.draw(
            st.sampled_from(
                [
                    ("displayName", "display_name", 256),
                    ("name.givenName", "given_name", 128),
                    ("name.familyName", "family_name", 128),
                    ("title", "title", 256),
                    ('addresses[type eq "work"].country', "country", 128),
                    (f"{ENTERPRISE}:employeeNumber", "employee_number", 128),
                    (f"{ENTERPRISE}:department", "department", 256),
                ]
            ),
            label="attribute",
        )
        value = data.draw(
            st.one_of(
                st.sampled_from(UNSTORABLE),
                st.sampled_from([limit + 1, 1000, 5000]).map(lambda n: "x" * n),
            ),
            label="value",
        )
        body = {
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "Replace", "path": attribute, "value": value}],
        }
        if self.attempt("PATCH", f"/Users/{user.scim_id}", body) is not None:
            setattr(user, model_key, value)

    @precondition(lambda self: not self.stopped and self.users)
    @rule(data=st.data())
    @_step
    def write_unstorable_text_in_an_ignored_attribute(self, data):
        """Unstorable text in an attribute Beem keeps but does not apply (nickName) is refused
        like anywhere else; a 2xx must still mean "applied"."""
        user = data.draw(st.sampled_from(sorted(self.users.values(), key=lambda u: u.user_name)))
        value = data.draw(st.sampled_from(UNSTORABLE), label="value")
        title = f"Title {_fresh()}"
        body = {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "Replace", "path": "title", "value": title},
                {"op": "Replace", "value": {"nickName": value}},
            ],
        }
        if self.attempt("PATCH", f"/Users/{user.scim_id}", body) is not None:
            user.title = title

    @precondition(lambda self: self.tenant is not None and not self.stopped)
    @rule(data=st.data())
    @_step
    def create_user_beem_cannot_apply(self, data):
        """A user without an identifier Beem can use, a userName whose folded form outgrows
        its column, or unstorable text where Beem ignores it."""
        n = _fresh()
        user = User(
            scim_id="",
            user_name=f"d{n}.{uuid.uuid4().hex[:4]}@contoso.onmicrosoft.com",
            external_id=str(uuid.uuid4()),
            display_name=f"Door {n}",
        )
        how = data.draw(
            st.sampled_from(["no identifier", "folded userName", "ignored attribute"]),
            label="how",
        )
        if how != "no identifier":
            user.phone = fresh_phone()
            user.phone_sent = user.phone
            user.email = fresh_email()
        if how == "folded userName":
            user.user_name = data.draw(st.sampled_from(FOLDS_LONGER), label="userName")
        body = self.user_body(user)
        if how == "ignored attribute":
            body["nickName"] = data.draw(st.sampled_from(UNSTORABLE), label="nickName")
        answer = self.attempt("POST", "/Users", body)
        if answer is not None:
            user.scim_id = answer["id"]
            self.users[user.scim_id] = user


def _run(machine: type[SyncMachine], *, real_worker: bool, scale: float = 1.0) -> None:
    profile = PROFILES[PROFILE]
    machine.env = Env(real_worker=real_worker)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=int(EXAMPLES)
            if EXAMPLES
            else max(1, int(profile["max_examples"] * scale)),
            stateful_step_count=profile["stateful_step_count"],
            derandomize=profile["derandomize"],
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
            phases=list(Phase) if SHRINK else [p for p in Phase if p != Phase.shrink],
        ),
    )


def user_read_problems(user: User, body: dict) -> list[str]:
    """What a SCIM read of the user says differently from what Entra wrote."""
    enterprise = body.get(ENTERPRISE, {})
    work = [e for e in body.get("emails", []) if e.get("type") == "work"]
    mobile = [p for p in body.get("phoneNumbers", []) if p.get("type") == "mobile"]
    address = [a for a in body.get("addresses", []) if a.get("type") == "work"]
    actual = {
        "userName": body.get("userName"),
        "externalId": body.get("externalId"),
        "active": body.get("active"),
        "displayName": body.get("displayName"),
        "givenName": body.get("name", {}).get("givenName"),
        "familyName": body.get("name", {}).get("familyName"),
        "title": body.get("title"),
        "email": work[0].get("value") if work else None,
        "mobile": mobile[0].get("value") if mobile else None,
        "country": address[0].get("country") if address else None,
        "employeeNumber": enterprise.get("employeeNumber"),
        "department": enterprise.get("department"),
        "manager": (enterprise.get("manager") or {}).get("value"),
    }
    expected = {
        "userName": user.user_name,
        "externalId": user.external_id,
        "active": user.active,
        "displayName": user.display_name,
        "givenName": user.given_name,
        "familyName": user.family_name,
        "title": user.title,
        "email": user.email,
        "mobile": user.phone_sent,
        "country": user.country,
        "employeeNumber": user.employee_number,
        "department": user.department,
        "manager": user.manager,
    }
    return [
        f"{key} reads {actual[key]!r}, Entra wrote {expected[key]!r}"
        for key in expected
        if actual[key] != expected[key]
    ]


# --- the tests ----------------------------------------------------------------------------------


@pytest.fixture
def fast_hashing(settings):
    # Client secrets are hashed like passwords; every example issues credentials.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_model_lifecycle_converges_with_a_real_worker(fast_hashing):
    _run(SyncMachine, real_worker=True)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_model_identifier_swaps_converge_with_a_real_worker(fast_hashing):
    _run(SwapMachine, real_worker=True)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_model_writes_beem_cannot_apply_are_refused_or_applied_with_a_real_worker(fast_hashing):
    _run(DoorMachine, real_worker=True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "machine", [SyncMachine, SwapMachine, DoorMachine], ids=lambda m: m.__name__
)
def test_model_embedded(machine, fast_hashing):
    """The same machines on the embedded default (eager apply, SQLite or PostgreSQL)."""
    assert connection.vendor in ("sqlite", "postgresql")
    _run(machine, real_worker=False)
