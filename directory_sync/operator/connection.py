"""``credentials``, ``activate`` and ``stop``: connecting an organization to Entra ID or Okta
without the UI (``activate`` takes the Set up in Beem options of ``configure``, and
``--directory okta`` switches the organization's directory, as the page's confirmed switch)."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import CommandError

from directory_sync import directories, selectors
from directory_sync import services as sync_services
from directory_sync.models import SyncSettings
from members.models import Organization

from . import OPERATOR
from .output import org_argument, organization_lookup
from .setup import (
    identification_change,
    settings_arguments_add,
    settings_form,
    settings_given,
    settings_save,
)


def parsers_add(sub) -> None:
    p = sub.add_parser(
        "credentials",
        help="Create an organization's Entra ID credentials, or issue a new client secret.",
        description="Print the Tenant URL, Token Endpoint, Client Identifier and (only "
        "when created or replaced) Client Secret to paste into Entra ID. Creates the "
        "credentials when there are none. With existing credentials, --yes issues a new "
        "Client Secret: the Tenant URL, Token Endpoint and Client Identifier do not change; "
        "the old secret and every token obtained with it stop working at once, so paste the "
        "new secret into Entra ID's Client Secret field.",
    )
    org_argument(p, required=True)
    p.add_argument(
        "--base-url",
        help="Public base URL for the printed URLs (e.g. https://beem.example.com) when "
        "BEEM_PUBLIC_URL is not set.",
    )
    _directory_argument(
        p, "The directory the credentials are for; must be the organization's (see activate)."
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="Issue a new Client Secret (the Client Identifier stays), or a new Okta API token "
        "(the old one stops working at once).",
    )

    p = sub.add_parser(
        "activate",
        help="Save the Set up in Beem choices given and activate (or reactivate) sync, like "
        "the UI's Save and Activate.",
        description="Activate an organization's sync, first saving the Set up in Beem "
        "choices given as options (validated and audited like configure; all of them are "
        "checked before anything changes). Issues credentials first when it has none (and "
        "prints them once). Audited as done by 'operator'.",
    )
    org_argument(p, required=True)
    p.add_argument("--base-url", help="Public base URL for printed URLs (see credentials).")
    _directory_argument(
        p,
        "Sync with this directory. Switching an organization that was set up for the other "
        "directory revokes that directory's credentials at once and needs --yes; members "
        "already synced stay.",
    )
    settings_arguments_add(p)
    p.add_argument(
        "--yes",
        action="store_true",
        help="Confirm changing --identify-by of a sync that is already active, or switching "
        "--directory.",
    )

    p = sub.add_parser(
        "stop",
        help="Stop sync: every SCIM call answers 401 (needs --yes).",
        description="Stop an organization's sync, like the UI's Stop button. Entra ID then "
        "gets 401 on every call and quarantines the provisioning job. Needs --yes.",
    )
    org_argument(p, required=True)
    p.add_argument("--yes", action="store_true", help="Really stop.")


def _directory_argument(parser, text: str) -> None:
    parser.add_argument(
        "--directory",
        choices=SyncSettings.Directory.values,
        default=None,
        help=text + " Default: the organization's current directory (entra_id at first).",
    )


def _okta_print(command, tenant: str, issued=None) -> None:
    command.stdout.write(f"SCIM connector base URL:           {tenant}")
    command.stdout.write("Unique identifier field for users: userName")
    command.stdout.write("Authentication Mode:               HTTP Header")
    if issued is not None:
        command.stdout.write(f"API token (Authorization: Bearer): {issued.token}")
        command.stdout.write(
            "The API token is shown only now (only a keyed hash is stored): paste it into "
            "Okta's Authorization field (Provisioning > Integration)."
        )


def _switch_asked(command, organization: Organization, directory: str | None) -> tuple[bool, bool]:
    """(switch the directory, the switch needs --yes). Switching a sync never set up changes
    nothing anyone relies on; one with credentials or members synced is confirmed."""
    # Read only: options are checked before anything is written.
    sync = selectors.sync_settings_find(organization=organization) or SyncSettings()
    if directory is None or sync.directory == directory:
        return False, False
    if sync.status == SyncSettings.Status.NOT_CONFIGURED and not directories.has_credentials(sync):
        return True, False
    name, current = directories.NAMES[directory], directories.NAMES[sync.directory]
    command.stdout.write(
        f"Would switch {organization.name} from {current} to {name}: the {current} "
        f"credentials stop working at once and the sync must be activated again for {name}. "
        f"Members already synced stay in Beem; {name} takes over those it sends with the same "
        "userName, the others stay until an administrator deletes them."
    )
    return True, True


def _urls(command, organization: Organization, base_url: str | None) -> tuple[str, str]:
    tenant = sync_services.tenant_url(organization=organization)
    token = sync_services.token_endpoint_url()
    if base_url:
        base = base_url.rstrip("/")
        if not urlsplit(base).scheme or not urlsplit(base).netloc:
            raise CommandError(f"--base-url {base_url!r} must look like https://host[:port].")
        tenant = base + urlsplit(tenant).path
        token = base + urlsplit(token).path
    elif not settings.BEEM_PUBLIC_URL:
        command.stderr.write(
            "Note: BEEM_PUBLIC_URL is not set; the URLs below use a local address. "
            "Pass --base-url https://<public host> to print the ones Entra ID must use."
        )
    return tenant, token


def _connection_print(
    command, organization: Organization, base_url: str | None, issued=None
) -> None:
    tenant, token = _urls(command, organization, base_url)
    sync = sync_services.sync_settings_get(organization=organization)
    client_id = issued.client_id if issued else getattr(sync.oauth_application, "client_id", "")
    command.stdout.write(f"Tenant URL:        {tenant}")
    command.stdout.write(f"Token Endpoint:    {token}")
    command.stdout.write(f"Client Identifier: {client_id or '(none yet)'}")
    if issued is not None:
        command.stdout.write(f"Client Secret:     {issued.client_secret}")
        command.stdout.write(
            "The client secret is shown only now (only a keyed hash is stored): copy it into "
            "Entra ID's provisioning Admin Credentials."
        )


def credentials(
    command, *, org: str, base_url: str | None, yes: bool, directory: str | None = None, **options
) -> None:
    organization = organization_lookup(org)
    sync = sync_services.sync_settings_get(organization=organization)
    if directory is not None and directory != sync.directory:
        raise CommandError(
            f"{organization.name} syncs with {sync.directory}, not {directory}: switch with "
            f"`manage.py directory_sync activate --org {organization.slug} --directory "
            f"{directory} --yes`."
        )
    if sync.directory == SyncSettings.Directory.OKTA:
        _okta_credentials(command, organization, sync, base_url=base_url, yes=yes)
        return
    if sync.oauth_application_id is not None and not yes:
        _connection_print(command, organization, base_url)
        created = sync.credentials_created_at
        command.stdout.write(
            f"\n{organization.name} already has credentials (created "
            f"{created.isoformat() if created else 'earlier'})."
            "\nWould issue a new Client Secret (the Client Identifier stays the same); the old "
            "secret and every token obtained with it stop working at once, so Entra ID fails "
            "until the new secret is pasted there.\nNothing was changed. Re-run with --yes "
            "to issue a new secret."
        )
        return
    issued = sync_services.credentials_issue(organization=organization, actor_label=OPERATOR)
    if issued.rotated:
        command.stdout.write(
            f"Issued a new Client Secret for {organization.name} (id {organization.pk}, slug "
            f"{organization.slug}). Unchanged: Tenant URL, Token Endpoint, Client Identifier. "
            "In Entra ID replace only the Client Secret, then Test Connection.\n"
        )
    else:
        command.stdout.write(
            f"Created Entra ID credentials for {organization.name} (id {organization.pk}, "
            f"slug {organization.slug}).\n"
        )
    _connection_print(command, organization, base_url, issued=issued)


def _okta_credentials(command, organization, sync, *, base_url, yes: bool) -> None:
    tenant, _token = _urls(command, organization, base_url)
    if sync.api_token_digest is None:
        raise CommandError(
            f"{organization.name} has no Okta API token: it is issued by `manage.py "
            f"directory_sync activate --org {organization.slug}` (a stop revokes it)."
        )
    if not yes:
        _okta_print(command, tenant)
        command.stdout.write(
            f"\n{organization.name} has an Okta API token (created "
            f"{sync.api_token_created_at.isoformat()}).\nWould issue a new API token; the old "
            "one stops working at once, so Okta fails until the new one is pasted there.\n"
            "Nothing was changed. Re-run with --yes to issue a new token."
        )
        return
    issued = directories.api_token_rotate(organization=organization, actor_label=OPERATOR)
    command.stdout.write(
        f"Issued a new Okta API token for {organization.name} (id {organization.pk}, slug "
        f"{organization.slug}). In Okta replace the token, then Test API Credentials.\n"
    )
    _okta_print(command, tenant, issued=issued)


def activate(
    command, *, org: str, base_url: str | None, yes: bool, directory: str | None = None, **options
) -> None:
    organization = organization_lookup(org)
    given = settings_given(options)
    switch, needs_yes = _switch_asked(command, organization, directory)
    if needs_yes and not yes:
        command.stdout.write("Nothing was changed. Re-run with --yes to switch.")
        return
    # Every option is checked before anything changes.
    form = settings_form(organization, given) if given else None
    if form is not None:
        change = identification_change(organization, form)
        if change and not yes:
            command.stdout.write(change + "\nNothing was changed. Re-run with --yes to change it.")
            return
    if base_url:
        _urls(command, organization, base_url)
    if switch:
        directories.directory_switch(
            organization=organization, directory=directory, actor_label=OPERATOR
        )
        command.stdout.write(f"Switched {organization.name} to {directory}.")
    before = sync_services.sync_settings_get(organization=organization).status
    changed = settings_save(command, organization, form) if form is not None else {}
    try:
        issued = sync_services.sync_activate(organization=organization, actor_label=OPERATOR)
    except sync_services.SyncSettingsError as exc:
        raise CommandError(str(exc))
    if before == SyncSettings.Status.ACTIVE:
        command.stdout.write(
            f"Sync of {organization.name} is already active"
            + ("." if changed else "; nothing changed.")
        )
    else:
        command.stdout.write(f"Activated sync of {organization.name} (was {before}).")
    if isinstance(issued, directories.okta.IssuedApiToken):
        command.stdout.write("An Okta API token was issued:\n")
        _okta_print(command, _urls(command, organization, base_url)[0], issued=issued)
    elif issued is not None:
        command.stdout.write("Credentials were issued for the first time:\n")
        _connection_print(command, organization, base_url, issued=issued)


def stop(command, *, org: str, yes: bool, **options) -> None:
    organization = organization_lookup(org)
    sync = sync_services.sync_settings_get(organization=organization)
    if sync.status != SyncSettings.Status.ACTIVE:
        command.stdout.write(
            f"Sync of {organization.name} is not active ({sync.status}); nothing to stop."
        )
        return
    if not yes:
        command.stdout.write(
            f"Would stop sync of {organization.name}: every SCIM call will answer 401 and "
            "Entra ID will quarantine the provisioning job until sync is reactivated.\n"
            "Nothing was changed. Re-run with --yes to stop."
        )
        return
    sync_services.sync_stop(organization=organization, actor_label=OPERATOR)
    command.stdout.write(f"Stopped sync of {organization.name}.")
    if sync.directory == SyncSettings.Directory.OKTA:
        command.stdout.write(
            "Its Okta API token is revoked; `activate` issues a new one to paste into Okta."
        )


HANDLERS = {"credentials": credentials, "activate": activate, "stop": stop}
