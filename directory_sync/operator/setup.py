"""``configure``, and the "Set up in Beem" options ``activate`` shares.

Every field of the Set up in Beem form (``forms.SyncSettingsForm``) is an option named after it
(``identify_by`` → ``--identify-by``). The options given replace the organization's stored
choices, the others keep theirs, and the whole set is validated by that form and saved by the
page's service (``services.sync_settings_update``), so the command refuses what the page
refuses and audits what the page audits, as done by "operator".
"""

from django.core.management.base import CommandError

from directory_sync import selectors
from directory_sync import services as sync_services
from directory_sync.forms import SyncSettingsForm
from directory_sync.models import SyncSettings
from members.models import Organization

from . import OPERATOR
from .output import org_argument, organization_lookup

# For a choice with too many values to list in an error.
CHOICE_HINTS = {
    "default_phone_country": 'Use a two-letter region code in capitals such as SA or AE, or "" '
    "for none (numbers must then carry their country code).",
}


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _choice_values(field) -> list[str]:
    return [str(value) for value, _label in getattr(field, "choices", []) if value != ""]


def settings_arguments_add(parser) -> None:
    """One option per field of the Set up in Beem form."""
    group = parser.add_argument_group(
        "Set up in Beem",
        "The choices of the Set up in Beem page. Options not given keep their stored value "
        "(or the page's default). Validated like the page; changes are audited as 'operator'.",
    )
    for name in SyncSettingsForm.setting_names():
        field = SyncSettingsForm.base_fields[name]
        values = _choice_values(field)
        text = str(field.label)
        if values:
            text += ": " + "; ".join(
                f"{value} = {label}" for value, label in field.choices if value != ""
            )
        if field.help_text:
            text += ". " + str(field.help_text)
        if name in CHOICE_HINTS:
            text += " " + CHOICE_HINTS[name]
        group.add_argument(
            option(name),
            dest=name,
            default=None,
            metavar="VALUE" if not values else "{" + ",".join(values) + "}",
            help=text.replace("%", "%%"),
        )


def _stored(organization: Organization) -> SyncSettings:
    # Read only: an organization never set up has the page's defaults (the model's).
    return selectors.sync_settings_find(organization=organization) or SyncSettings(
        organization=organization
    )


def settings_given(options: dict) -> dict[str, str]:
    return {
        name: options[name]
        for name in SyncSettingsForm.setting_names()
        if options.get(name) is not None
    }


def settings_form(organization: Organization, given: dict[str, str]) -> SyncSettingsForm:
    """The Set up in Beem form bound to the stored choices with ``given`` replacing some;
    a CommandError naming each refused option (and what it accepts) when it is not valid."""
    data = {**SyncSettingsForm.initial_from(_stored(organization)), **given}
    form = SyncSettingsForm(data)
    if form.is_valid():
        return form
    lines = []
    for name, errors in form.errors.as_data().items():
        field = form.fields.get(name)
        if field is None:
            lines.extend(message for error in errors for message in error.messages)
            continue
        value = f" {given[name]!r}" if name in given else f" (stored value {data.get(name)!r})"
        for error in errors:
            text = " ".join(error.messages)
            if error.code == "invalid_choice":
                if name in CHOICE_HINTS:
                    text += " " + CHOICE_HINTS[name]
                else:
                    text += " Choose one of: " + ", ".join(_choice_values(field)) + "."
            lines.append(f"{option(name)}{value}: {text}")
    raise CommandError(
        "Invalid Set up in Beem choices; nothing was changed:\n  " + "\n  ".join(lines)
    )


def identification_change(organization: Organization, form: SyncSettingsForm) -> str | None:
    """What changing "Identify existing users by" does, when it changes while sync is active
    (the command then wants ``--yes``, as the page asks for a confirmation)."""
    stored = _stored(organization)
    wanted = form.cleaned_data["identify_by"]
    if stored.status != SyncSettings.Status.ACTIVE or stored.identify_by == wanted:
        return None
    labels = dict(SyncSettings.IdentifyBy.choices)
    return (
        f"Would change how {organization.name} identifies existing users from "
        f"{str(labels[stored.identify_by]).lower()} ({stored.identify_by}) to "
        f"{str(labels[wanted]).lower()} ({wanted}) while sync is active: directory users not "
        f"yet linked are matched to members created in Beem by their {wanted} from now on, and "
        f"a {wanted} another member holds refuses the directory's change instead of being "
        "held as a possible duplicate. Members already linked stay linked."
    )


def settings_save(command, organization: Organization, form: SyncSettingsForm) -> dict:
    """Save the validated form like the page does; prints and returns what changed
    (``{name: (from, to)}``)."""
    before = SyncSettingsForm.initial_from(_stored(organization))
    try:
        saved = sync_services.sync_settings_update(
            organization=organization, actor_label=OPERATOR, **form.cleaned_data
        )
    except sync_services.SyncSettingsError as exc:
        raise CommandError(f"{option(exc.field)}: {exc}" if exc.field else str(exc))
    after = SyncSettingsForm.initial_from(saved)
    changed = {
        name: (before.get(name), value)
        for name, value in after.items()
        if before.get(name) != value
    }
    if changed:
        command.stdout.write(f"Saved the Set up in Beem choices of {organization.name}:")
        for name, (old, new) in changed.items():
            command.stdout.write(f"  {option(name)}: {old or '(none)'} -> {new or '(none)'}")
    return changed


# --- configure ------------------------------------------------------------------------------


def parsers_add(sub) -> None:
    p = sub.add_parser(
        "configure",
        help="Set the Set up in Beem choices (identify by, deletion rule, departments, ...).",
        description="Change an organization's Set up in Beem choices from the command line, "
        "validated by the same form as the page and audited as done by 'operator'. Does not "
        "activate sync (see activate, which takes the same options). Changing --identify-by "
        "while sync is active needs --yes.",
    )
    org_argument(p, required=True)
    settings_arguments_add(p)
    p.add_argument(
        "--yes", action="store_true", help="Confirm changing --identify-by of an active sync."
    )


def configure(command, *, org: str, yes: bool, **options) -> None:
    organization = organization_lookup(org)
    given = settings_given(options)
    if not given:
        raise CommandError(
            "Give at least one choice to change, e.g. --identify-by email "
            "(`directory_sync configure --help` lists them; `status` shows the current ones)."
        )
    form = settings_form(organization, given)
    change = identification_change(organization, form)
    if change and not yes:
        command.stdout.write(change + "\nNothing was changed. Re-run with --yes to change it.")
        return
    if not settings_save(command, organization, form):
        command.stdout.write(
            f"The Set up in Beem choices of {organization.name} already are these; nothing changed."
        )
        return
    if _stored(organization).status == SyncSettings.Status.NOT_CONFIGURED:
        command.stdout.write(
            f"Sync is not active yet: run `manage.py directory_sync activate --org "
            f"{organization.slug}` to activate it."
        )


HANDLERS = {"configure": configure}
