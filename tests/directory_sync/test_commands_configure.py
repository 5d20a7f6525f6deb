"""manage.py directory_sync configure / activate with Set up in Beem options, and status showing
the choices (issue 18): validated by the page's form, audited like the page, as "operator"."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from directory_sync import services as sync_services
from directory_sync.forms import SyncSettingsForm
from directory_sync.models import SyncSettings
from members.models import AuditEntry

pytestmark = pytest.mark.django_db

# Every field of the Set up in Beem form, as an option, with a valid non-default value.
CHOICES = {
    "deletion_rule": "delete_transfer_to_manager",
    "identify_by": "email",
    "department_format": "structure_string",
    "department_delimiter": ">",
    "duplicate_department_policy": "all_matches",
    "default_phone_country": "SA",
}


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("directory_sync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def options(**choices) -> list[str]:
    args = []
    for name, value in choices.items():
        args += ["--" + name.replace("_", "-"), value]
    return args


def stored(organization) -> dict:
    return SyncSettingsForm.initial_from(SyncSettings.objects.get(organization=organization))


def settings_entries(organization) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(organization=organization, action="sync.settings_updated")
    )


def test_every_field_of_the_set_up_in_beem_form_is_an_option_of_configure_and_activate(capsys):
    for subcommand in ("configure", "activate"):
        with pytest.raises(SystemExit):
            call_command("directory_sync", subcommand, "--help")
        text = capsys.readouterr().out
        for name in SyncSettingsForm.setting_names():
            assert "--" + name.replace("_", "-") in text
        # The page's confirmation checkbox is --yes here, not an option.
        assert "--confirm-identify-by" not in text
    assert set(CHOICES) == set(SyncSettingsForm.setting_names())
    assert set(SyncSettingsForm.base_fields) - set(CHOICES) == {"confirm_identify_by"}


def test_configure_saves_every_choice_and_audits_it_like_the_page(organization):
    out, _ = run("configure", "--org", "acme", *options(**CHOICES))

    assert stored(organization) == CHOICES
    (entry,) = settings_entries(organization)
    assert entry.actor_label == "operator"
    assert entry.actor is None
    assert entry.detail == {
        "changed": {
            "deletion_rule": {"from": "delete_directly", "to": "delete_transfer_to_manager"},
            "identify_by": {"from": "phone", "to": "email"},
            "department_format": {"from": "plain_name", "to": "structure_string"},
            "department_delimiter": {"from": "/", "to": ">"},
            "duplicate_department_policy": {"from": "hold_for_admin", "to": "all_matches"},
            "default_phone_country": {"from": "", "to": "SA"},
        }
    }
    assert out.splitlines() == [
        "Saved the Set up in Beem choices of Acme:",
        "  --deletion-rule: delete_directly -> delete_transfer_to_manager",
        "  --identify-by: phone -> email",
        "  --department-format: plain_name -> structure_string",
        "  --department-delimiter: / -> >",
        "  --duplicate-department-policy: hold_for_admin -> all_matches",
        "  --default-phone-country: (none) -> SA",
        "Sync is not active yet: run `manage.py directory_sync activate --org acme` to "
        "activate it.",
    ]
    # Configuring does not activate.
    assert SyncSettings.objects.get(organization=organization).status == "not_configured"


def test_configure_changes_only_the_choices_given(organization):
    sync_services.sync_settings_update(
        organization=organization,
        actor_label="test",
        identify_by="email",
        deletion_rule=("delete_transfer_to_manager"),
    )

    run("configure", "--org", "acme", "--department-format", "structure_string")

    assert stored(organization) == {
        "deletion_rule": "delete_transfer_to_manager",
        "identify_by": "email",
        "department_format": "structure_string",
        "department_delimiter": "/",
        "duplicate_department_policy": "hold_for_admin",
        "default_phone_country": "",
    }
    (entry,) = [e for e in settings_entries(organization) if e.actor_label == "operator"]
    assert entry.detail == {
        "changed": {"department_format": {"from": "plain_name", "to": "structure_string"}}
    }


def test_configure_with_the_stored_choices_changes_and_audits_nothing(organization):
    run("configure", "--org", "acme", "--identify-by", "email")

    out, _ = run("configure", "--org", "acme", "--identify-by", "email")

    assert out == "The Set up in Beem choices of Acme already are these; nothing changed.\n"
    assert len(settings_entries(organization)) == 1


def test_configure_can_clear_the_default_phone_country(organization):
    run("configure", "--org", "acme", "--default-phone-country", "SA")

    run("configure", "--org", "acme", "--default-phone-country", "")

    assert stored(organization)["default_phone_country"] == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--identify-by", "mail"],
            "--identify-by 'mail': Select a valid choice. mail is not one of the available "
            "choices. Choose one of: phone, email.",
        ),
        (
            ["--deletion-rule", "keep"],
            "--deletion-rule 'keep': Select a valid choice. keep is not one of the available "
            "choices. Choose one of: delete_directly, delete_transfer_to_manager.",
        ),
        (
            ["--department-format", "tree"],
            "--department-format 'tree': Select a valid choice. tree is not one of the "
            "available choices. Choose one of: plain_name, structure_string.",
        ),
        (
            ["--duplicate-department-policy", "any"],
            "--duplicate-department-policy 'any': Select a valid choice. any is not one of "
            "the available choices. Choose one of: hold_for_admin, first_match, all_matches.",
        ),
        (
            ["--default-phone-country", "Saudi"],
            "--default-phone-country 'Saudi': Select a valid choice. Saudi is not one of the "
            "available choices. Use a two-letter region code in capitals such as SA or AE, "
            'or "" for none (numbers must then carry their country code).',
        ),
        (
            ["--department-delimiter", "-"],
            "--department-delimiter '-': Use a separator that never appears inside a "
            "department name, such as / or \\ or > or |; letters, digits, spaces and "
            "\" & ' - . _ are not allowed.",
        ),
        (
            ["--department-delimiter", "//////"],
            "--department-delimiter '//////': Ensure this value has at most 5 characters (it "
            "has 6).",
        ),
        (
            ["--department-format", "structure_string", "--department-delimiter", ""],
            "--department-delimiter '': A complete structure string needs a delimiter.",
        ),
    ],
)
def test_configure_refuses_what_the_page_refuses_and_changes_nothing(organization, args, message):
    with pytest.raises(CommandError) as error:
        run("configure", "--org", "acme", *args)

    assert str(error.value) == (
        "Invalid Set up in Beem choices; nothing was changed:\n  " + message
    )
    assert not SyncSettings.objects.filter(organization=organization).exists()
    assert not settings_entries(organization)


def test_configure_reports_every_refused_option_at_once(organization):
    with pytest.raises(CommandError) as error:
        run("configure", "--org", "acme", "--identify-by", "x", "--deletion-rule", "y")

    lines = str(error.value).splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "--deletion-rule 'y'",
        "--identify-by 'x'",
    ]


def test_configure_without_a_choice_says_what_to_give(organization):
    with pytest.raises(CommandError, match="Give at least one choice to change"):
        run("configure", "--org", "acme")


def test_configure_of_an_unknown_organization_is_a_clear_error():
    with pytest.raises(CommandError, match="Unknown organization 'nope'"):
        run("configure", "--org", "nope", "--identify-by", "email")


def test_changing_identification_of_an_active_sync_needs_yes(organization):
    sync_services.sync_activate(organization=organization, actor_label="test")

    out, _ = run(
        "configure",
        "--org",
        "acme",
        "--identify-by",
        "email",
        "--deletion-rule",
        "delete_transfer_to_manager",
    )

    assert out.startswith(
        "Would change how Acme identifies existing users from phone number (phone) to email "
        "address (email) while sync is active"
    )
    assert out.endswith("Nothing was changed. Re-run with --yes to change it.\n")
    assert stored(organization)["identify_by"] == "phone"
    assert stored(organization)["deletion_rule"] == "delete_directly"
    assert not settings_entries(organization)

    run("configure", "--org", "acme", "--identify-by", "email", "--yes")

    assert stored(organization)["identify_by"] == "email"
    assert settings_entries(organization)[0].actor_label == "operator"


def test_other_choices_of_an_active_sync_change_without_yes(organization):
    sync_services.sync_activate(organization=organization, actor_label="test")

    out, _ = run("configure", "--org", "acme", "--deletion-rule", "delete_transfer_to_manager")

    assert out == (
        "Saved the Set up in Beem choices of Acme:\n"
        "  --deletion-rule: delete_directly -> delete_transfer_to_manager\n"
    )
    assert stored(organization)["deletion_rule"] == "delete_transfer_to_manager"


# --- activate ------------------------------------------------------------------------------


def test_activate_with_options_saves_the_choices_then_activates(organization):
    out, _ = run(
        "activate", "--org", "acme", "--base-url", "https://beem.example.com", *options(**CHOICES)
    )

    sync = SyncSettings.objects.get(organization=organization)
    assert sync.status == SyncSettings.Status.ACTIVE
    assert stored(organization) == CHOICES
    lines = out.splitlines()
    assert lines[0] == "Saved the Set up in Beem choices of Acme:"
    assert "  --identify-by: phone -> email" in lines
    assert "Activated sync of Acme (was not_configured)." in lines
    assert "Client Secret:" in out
    actions = list(
        AuditEntry.objects.filter(organization=organization)
        .order_by("id")
        .values_list("action", "actor_label")
    )
    # The page's Save and Activate writes the same entries in the same order.
    assert actions == [
        ("sync.settings_updated", "operator"),
        ("sync.credentials_issued", "operator"),
        ("sync.activated", "operator"),
    ]


def test_activate_with_a_bad_option_changes_nothing(organization):
    with pytest.raises(CommandError) as error:
        run("activate", "--org", "acme", "--identify-by", "email", "--department-format", "x")

    assert "--department-format 'x': Select a valid choice." in str(error.value)
    assert not SyncSettings.objects.filter(organization=organization).exists()
    assert not AuditEntry.objects.filter(organization=organization).exists()


def test_activate_of_an_active_sync_with_new_choices_saves_them(organization):
    sync_services.sync_activate(organization=organization, actor_label="test")

    out, _ = run("activate", "--org", "acme", "--department-delimiter", "|")

    assert out == (
        "Saved the Set up in Beem choices of Acme:\n"
        "  --department-delimiter: / -> |\n"
        "Sync of Acme is already active.\n"
    )
    assert stored(organization)["department_delimiter"] == "|"


def test_activate_changing_identification_of_an_active_sync_needs_yes(organization):
    sync_services.sync_activate(organization=organization, actor_label="test")

    out, _ = run("activate", "--org", "acme", "--identify-by", "email")

    assert "Nothing was changed. Re-run with --yes to change it." in out
    assert stored(organization)["identify_by"] == "phone"

    run("activate", "--org", "acme", "--identify-by", "email", "--yes")

    assert stored(organization)["identify_by"] == "email"


# --- status ----------------------------------------------------------------------------------


def test_status_shows_the_choices_configure_set(organization):
    run("configure", "--org", "acme", *options(**CHOICES))

    rows = json.loads(run("status", "--org", "acme", "--format", "json")[0])
    table, _ = run("status", "--org", "acme")

    assert rows[0]["settings"] == CHOICES
    assert table.splitlines()[-1].split() == [
        "acme",
        f"({organization.pk})",
        "email",
        "delete_transfer_to_manager",
        "structure_string",
        ">",
        "all_matches",
        "SA",
    ]
