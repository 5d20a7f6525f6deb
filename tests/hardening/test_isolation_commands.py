"""Every operator command that takes ``--org`` acts on that organization only, and an ``--org``
value that could name two organizations (one's id, another's slug) is refused, not guessed."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from directory_sync import services as sync_services
from directory_sync.models import ChangeEvent, DirectoryRecord, SyncSettings
from members import services as member_services
from members.models import AuditEntry

from .conftest import scim_user, token_for


def org_with_pending_user(client, slug: str, user_name: str, phone: str):
    organization = member_services.organization_get_or_create(slug=slug, name=slug.title())
    issued = sync_services.sync_activate(organization=organization, actor_label="test")
    token = token_for(client, client_id=issued.client_id, client_secret=issued.client_secret)
    # The test transaction never commits: the change event stays pending, never dispatched.
    response = client.post(
        f"/scim/v2/{organization.pk}/Users",
        scim_user(user_name, phone=phone),
        content_type="application/scim+json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 201, response.content
    return organization


@pytest.fixture
def two_orgs(db, client):
    a = org_with_pending_user(client, "acme", "ann@acme.com", "+966501230001")
    b = org_with_pending_user(client, "globex", "bob@globex.com", "+966501230002")
    return a, b


def state_of(organization) -> str:
    settings = SyncSettings.objects.filter(organization=organization).values(
        "status",
        "oauth_application__client_id",
        "oauth_application__client_secret",
        *sync_services.EDITABLE_FIELDS,
    )
    events = ChangeEvent.objects.filter(organization=organization).values(
        "id", "status", "dispatched_at", "attempts"
    )
    records = DirectoryRecord.objects.filter(organization=organization).values(
        "id", "version", "member_id", "applied_version"
    )
    audit = AuditEntry.objects.filter(organization=organization).values("action")
    return json.dumps(
        [list(settings), list(events), list(records), list(audit)], default=str, sort_keys=True
    )


def run(*args) -> str:
    from io import StringIO

    out, err = StringIO(), StringIO()
    call_command("directory_sync", *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


COMMANDS = [
    ["status", "--format", "json"],
    ["status"],
    ["credentials", "--yes"],
    ["activate"],
    ["activate", "--deletion-rule", "delete_transfer_to_manager", "--default-phone-country", "SA"],
    ["configure", "--identify-by", "email", "--department-format", "structure_string", "--yes"],
    ["stop", "--yes"],
    ["redispatch", "--yes"],
    ["redispatch", "--include-failed", "--yes"],
    ["reconcile", "--format", "json"],
    ["reconcile", "--fix", "--yes"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
@pytest.mark.parametrize("by", ["slug", "id"])
def test_a_command_for_one_organization_leaves_the_other_untouched(args, by, two_orgs):
    a, b = two_orgs
    before = state_of(b)
    name = a.slug if by == "slug" else str(a.pk)

    output = run(args[0], "--org", name, *args[1:])

    assert state_of(b) == before
    assert "globex" not in output.lower()
    assert "bob@globex.com" not in output


def test_redispatch_for_one_organization_sends_only_its_events(two_orgs):
    a, b = two_orgs

    run("redispatch", "--org", a.slug, "--yes")

    assert not ChangeEvent.objects.filter(organization=a, status="pending").exists()
    assert set(ChangeEvent.objects.filter(organization=b).values_list("status", flat=True)) == {
        "pending"
    }
    assert not ChangeEvent.objects.filter(organization=b, dispatched_at__isnull=False).exists()


def test_stop_for_one_organization_stops_only_that_one(two_orgs):
    a, b = two_orgs

    run("stop", "--org", a.slug, "--yes")

    assert SyncSettings.objects.get(organization=a).status == "stopped"
    assert SyncSettings.objects.get(organization=b).status == "active"


def test_an_unknown_organization_is_refused(two_orgs):
    with pytest.raises(CommandError, match="Unknown organization"):
        run("stop", "--org", "initech", "--yes")


def test_an_org_value_that_is_one_organizations_id_and_anothers_slug_is_refused(two_orgs):
    a, b = two_orgs
    # An organization whose slug is the other one's id: "--org <id>" could mean either.
    member_services.organization_get_or_create(slug=str(b.pk), name="Numeric slug")
    before = state_of(b)

    with pytest.raises(CommandError, match="ambiguous"):
        run("stop", "--org", str(b.pk), "--yes")

    assert state_of(b) == before
