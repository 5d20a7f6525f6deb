"""Set up in Beem (Save and Activate) and Set up in Entra ID (credentials shown once)."""

import pytest
from django.urls import reverse

from directory_sync import services as sync_services
from directory_sync.models import SyncSettings
from members import services as member_services
from members.models import AuditEntry

from .conftest import SCIMClient, token_obtain

SETUP_URL = reverse("directory_sync:sync_settings_form")
ENTRA_URL = reverse("directory_sync:sync_entra")
ROTATE_URL = reverse("directory_sync:credentials_rotate")
STATUS_URL = reverse("directory_sync:sync_status")

VALID = {
    "deletion_rule": "delete_directly",
    "identify_by": "email",
    "department_format": "structure_string",
    "department_delimiter": ">",
    "duplicate_department_policy": "first_match",
    "default_phone_country": "SA",
}


def _settings(organization) -> SyncSettings:
    return SyncSettings.objects.get(organization=organization)


def test_setup_form_shows_defaults_and_product_warnings(admin_client):
    response = admin_client.get(SETUP_URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'value="delete_directly" checked' in html.replace("\n", " ") or (
        'value="delete_directly"' in html
    )
    form = response.context["form"]
    assert form["deletion_rule"].value() == "delete_directly"
    assert form["identify_by"].value() == "phone"
    assert "Save and Activate" in html
    assert "will treat them as new users and create duplicate accounts" in html
    assert "+966512345678" in html
    assert not SyncSettings.objects.exists(), "viewing the form must not create settings"


def test_setup_form_counts_members_with_phone_and_with_email(admin_client, organization):
    member_services.member_create(organization=organization, phone="+966512345678")
    member_services.member_create(organization=organization, phone="+966512345679")
    member_services.member_create(organization=organization, email="lina@acme.test")
    member_services.member_create(
        organization=organization, phone="+966512345670", email="omar@acme.test"
    )

    response = admin_client.get(SETUP_URL)

    html = response.content.decode()
    assert "3 of 4 existing members have a mobile number" in html
    assert "2 of 4 existing members have an email address" in html
    counts = response.context["counts"]
    assert (counts.phone_only, counts.email_only) == (2, 1)


def test_save_and_activate_saves_activates_and_shows_entra_setup(admin_client, organization):
    response = admin_client.post(SETUP_URL, VALID)

    # The answer to Save and Activate is the "Set up in Entra ID" page itself: it carries the
    # new secret, which is never stored in the session for a redirect.
    assert response.status_code == 200
    assert response.templates[0].name == "directory_sync/sync_entra.html"
    saved = _settings(organization)
    assert saved.status == SyncSettings.Status.ACTIVE
    assert saved.activated_at is not None
    assert saved.oauth_application is not None
    assert {name: getattr(saved, name) for name in VALID} == VALID
    actions = set(
        AuditEntry.objects.filter(organization=organization).values_list("action", flat=True)
    )
    assert {"sync.settings_updated", "sync.activated"} <= actions


def test_plain_department_names_need_no_delimiter(admin_client, organization):
    data = {**VALID, "department_format": "plain_name", "department_delimiter": ""}

    response = admin_client.post(SETUP_URL, data)

    assert response.status_code == 200
    assert response.context["client_secret"]
    assert _settings(organization).department_delimiter == "/"


@pytest.mark.parametrize(
    ("delimiter", "message"),
    [
        ("", "A complete structure string needs a delimiter."),
        ("a", "Use a separator that never appears inside a department name"),
        (" / ", "The delimiter cannot contain spaces."),
        ("-", "Use a separator that never appears inside a department name"),
        ("//////", "Ensure this value has at most 5 characters"),
    ],
)
def test_bad_delimiter_is_a_form_error_and_nothing_is_saved(admin_client, delimiter, message):
    response = admin_client.post(SETUP_URL, {**VALID, "department_delimiter": delimiter})

    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["department_delimiter"])
    assert not SyncSettings.objects.filter(status=SyncSettings.Status.ACTIVE).exists()


def test_unknown_country_is_a_form_error(admin_client):
    response = admin_client.post(SETUP_URL, {**VALID, "default_phone_country": "XX"})

    assert response.status_code == 200
    assert "Select a valid choice" in response.context["form"].errors["default_phone_country"][0]
    assert not SyncSettings.objects.exists()


def test_missing_choices_are_form_errors_not_server_errors(admin_client):
    response = admin_client.post(SETUP_URL, {"identify_by": "fax"})

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) >= {"deletion_rule", "identify_by", "department_format"}


def test_country_select_lists_phonenumbers_regions_with_calling_codes(admin_client):
    response = admin_client.get(SETUP_URL)

    choices = dict(response.context["form"].fields["default_phone_country"].choices)
    assert choices["SA"] == "Saudi Arabia (+966)"
    assert choices["AE"].endswith("(+971)")


def test_saving_an_active_sync_updates_settings_without_new_credentials(admin_client, organization):
    admin_client.post(SETUP_URL, VALID)
    admin_client.get(ENTRA_URL)  # the secret is consumed
    client_id = _settings(organization).oauth_application.client_id

    response = admin_client.post(
        SETUP_URL, {**VALID, "identify_by": "phone", "confirm_identify_by": "on"}
    )

    assert response.status_code == 302
    saved = _settings(organization)
    assert saved.identify_by == "phone"
    assert saved.oauth_application.client_id == client_id
    assert "Copy the client secret now" not in admin_client.get(ENTRA_URL).content.decode()


def test_saving_a_stopped_sync_does_not_restart_it(admin_client, organization):
    admin_client.post(SETUP_URL, VALID)
    sync_services.sync_stop(organization=organization)

    response = admin_client.post(SETUP_URL, {**VALID, "identify_by": "phone"})

    assert response.status_code == 302
    assert _settings(organization).status == SyncSettings.Status.STOPPED


def test_entra_page_before_setup_sends_admin_to_set_up_in_beem(admin_client):
    response = admin_client.get(ENTRA_URL)

    assert response.status_code == 302
    assert response.url == SETUP_URL


def test_entra_page_shows_credentials_and_the_secret_only_once(admin_client, organization):
    first = admin_client.post(SETUP_URL, VALID)
    application = _settings(organization).oauth_application

    second = admin_client.get(ENTRA_URL)

    html = first.content.decode()
    secret = first.context["client_secret"]
    assert secret and secret in html
    assert f"http://testserver/scim/v2/{organization.pk}" in html
    assert "http://testserver/o/token/" in html
    assert application.client_id in html
    assert 'href="https://entra.microsoft.com/" target="_blank" rel="noopener noreferrer"' in html
    assert "no-store" in first["Cache-Control"]
    # A reload asks for the page's own address again instead of resending the form.
    assert f'history.replaceState(null, "", "{ENTRA_URL}")' in html
    again = second.content.decode()
    assert "history.replaceState" not in again
    assert second.context["client_secret"] is None
    assert secret not in again
    assert application.client_id in again
    assert "shown only once" in again
    # Only a hash is stored: the plaintext secret is nowhere in the database.
    application.refresh_from_db()
    assert application.client_secret != secret


def test_entra_page_has_attribute_mapping_and_scoping_tip(admin_client):
    html = admin_client.post(SETUP_URL, VALID).content.decode()

    assert "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department" in html
    assert "userPrincipalName" in html
    assert "Switch([IsSoftDeleted], , &quot;False&quot;, &quot;True&quot;" in html
    assert "IS NOT NULL" in html
    for label in ("Tenant URL", "Token Endpoint", "Client Identifier", "Client Secret"):
        assert label in html
    assert html.count("data-copy=") == 4


def test_rotate_asks_for_confirmation_first(admin_client, organization):
    admin_client.post(SETUP_URL, VALID)
    client_id = _settings(organization).oauth_application.client_id

    page = admin_client.get(ROTATE_URL)
    unconfirmed = admin_client.post(ROTATE_URL, {})

    assert page.status_code == 200
    html = page.content.decode()
    assert "stop working immediately" in html
    assert "The Client Identifier stays the same" in html
    assert client_id in html
    assert unconfirmed.status_code == 200
    assert unconfirmed.context["form"].errors["confirm"]
    assert _settings(organization).oauth_application.client_id == client_id


def test_new_secret_keeps_the_client_id_and_is_shown_once_in_the_answer(admin_client, organization):
    old_secret = admin_client.post(SETUP_URL, VALID).context["client_secret"]
    old_client_id = _settings(organization).oauth_application.client_id

    response = admin_client.post(ROTATE_URL, {"confirm": "on"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new_secret = response.context["client_secret"]
    assert new_secret and new_secret != old_secret
    assert _settings(organization).oauth_application.client_id == old_client_id
    html = response.content.decode()
    assert new_secret in html and old_client_id in html
    assert "the Client Identifier is unchanged" in html
    assert "Only the Client Secret changed" in html
    assert admin_client.get(ENTRA_URL).context["client_secret"] is None
    assert AuditEntry.objects.filter(
        organization=organization, action="sync.credentials_rotated"
    ).exists()


def test_new_secret_page_before_setup_sends_admin_to_set_up_in_beem(admin_client):
    response = admin_client.post(ROTATE_URL, {"confirm": "on"})

    assert response.status_code == 302
    assert response.url == SETUP_URL


def test_after_a_new_secret_the_status_waits_for_entra_to_use_it(
    admin_client, organization, settings
):
    # Both Test Connections come within a second here; in life pasting the new secret into
    # Entra takes longer than the window in which a second probe joins the first one's run.
    settings.BEEM_PROBE_COALESCE_SECONDS = 0
    old_secret = admin_client.post(SETUP_URL, VALID).context["client_secret"]
    client_id = _settings(organization).oauth_application.client_id
    old_token = token_obtain(client_id, old_secret).json()["access_token"]
    probe = '/Users?filter=userName eq "8f1c7a52-0d4e-4f0b-9a57-0e1d2b3c4d5e"'
    assert SCIMClient(organization=organization, token=old_token).get(probe).status_code == 200
    assert admin_client.get(STATUS_URL).context["state"] == "connected"

    new_secret = admin_client.post(ROTATE_URL, {"confirm": "on"}).context["client_secret"]

    assert admin_client.get(STATUS_URL).context["state"] == "waiting_for_test_connection"
    assert SCIMClient(organization=organization, token=old_token).get(probe).status_code == 401
    assert admin_client.get(STATUS_URL).context["state"] == "waiting_for_test_connection"
    new_token = token_obtain(client_id, new_secret).json()["access_token"]
    assert SCIMClient(organization=organization, token=new_token).get(probe).status_code == 200
    assert admin_client.get(STATUS_URL).context["state"] == "connected"


def test_resubmitting_new_secret_does_not_replace_the_secret_just_shown(admin_client, organization):
    admin_client.post(SETUP_URL, VALID)
    form = admin_client.get(ROTATE_URL).context["form"]
    data = {"confirm": "on", "credentials_issued_at": form.initial["credentials_issued_at"]}
    shown = admin_client.post(ROTATE_URL, data).context["client_secret"]
    client_id = _settings(organization).oauth_application.client_id

    again = admin_client.post(ROTATE_URL, data)  # the browser's "resend the form?" on reload

    assert again.status_code == 302
    assert again.url == ENTRA_URL
    assert token_obtain(client_id, shown).status_code == 200
    assert (
        AuditEntry.objects.filter(
            organization=organization, action="sync.credentials_rotated"
        ).count()
        == 1
    )


def test_changing_identify_by_while_active_asks_what_will_happen_first(admin_client, organization):
    from tests.directory_sync.engine_factories import user_create

    admin_client.post(SETUP_URL, VALID)  # active, identifying by email
    member_services.member_create(organization=organization, email="only@acme.test")
    member_services.member_create(organization=organization, phone="+966512345678")
    user_create(organization, user_name="u@acme.test", email="u@acme.test")
    audited = AuditEntry.objects.filter(action="sync.settings_updated").count()

    response = admin_client.post(SETUP_URL, {**VALID, "identify_by": "phone"})

    assert response.status_code == 200
    assert _settings(organization).identify_by == "email"
    assert AuditEntry.objects.filter(action="sync.settings_updated").count() == audited
    html = response.content.decode()
    change = response.context["form"].identify_by_change
    assert (change.old, change.new, change.unmatched, change.linked) == ("email", "phone", 1, 0)
    assert "Change identification from email address to mobile number?" in html
    assert "1 existing member has no mobile number" in html
    assert 'name="confirm_identify_by"' in html and "Confirm and save" in html
    # What was typed is kept for the confirmation.
    assert response.context["form"]["department_delimiter"].value() == ">"

    response = admin_client.post(
        SETUP_URL, {**VALID, "identify_by": "phone", "confirm_identify_by": "on"}, follow=True
    )

    assert _settings(organization).identify_by == "phone"
    assert [str(m) for m in response.context["messages"]] == [
        "Settings saved.",
        "Existing users are now identified by mobile number instead of email address, from "
        "the next provisioning cycle on. Members already linked to a directory user stay "
        "linked.",
    ]


def test_other_changes_of_an_active_sync_need_no_confirmation(admin_client, organization):
    admin_client.post(SETUP_URL, VALID)

    response = admin_client.post(
        SETUP_URL, {**VALID, "deletion_rule": "delete_transfer_to_manager"}
    )

    assert response.status_code == 302
    assert _settings(organization).deletion_rule == "delete_transfer_to_manager"
