"""Forms of the "Sync with Entra ID" pages. They validate input; services write."""

from dataclasses import dataclass

import phonenumbers
from django import forms
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from members.display import country_names, department_labels
from members.models import Department, Member

from .models import ChangeEvent, DirectoryRecord, SyncSettings

# Characters that would split ordinary department names ("R&D", "Sales 2") if used as the
# structure delimiter.
_FORBIDDEN_DELIMITER_CHARS = set("&-_'\".")


def phone_country_choices() -> list[tuple[str, str]]:
    """Every region phonenumbers knows, named in the page's language (CLDR, via Babel)."""
    names = country_names(phonenumbers.SUPPORTED_REGIONS)
    rows = sorted(
        (
            (region, f"{names[region]} (+{phonenumbers.country_code_for_region(region)})")
            for region in phonenumbers.SUPPORTED_REGIONS
        ),
        key=lambda row: row[1],
    )
    return [("", _("None: numbers must carry their country code"))] + rows


@dataclass(frozen=True)
class IdentifyByChange:
    """What changing "Identify existing users by" does to an active sync (the confirmation)."""

    old: str
    new: str
    # Members without the new identifier: a directory user cannot be matched to them.
    unmatched: int
    # Directory users already linked to a member: they stay linked.
    linked: int
    # Directory users without a work email (switching to email): their next change is refused.
    records_without_email: int

    # The identifiers as words inside a sentence.
    WORDS = {
        SyncSettings.IdentifyBy.PHONE: _("mobile number"),
        SyncSettings.IdentifyBy.EMAIL: _("email address"),
    }

    @property
    def old_label(self) -> str:
        return str(self.WORDS[self.old])

    @property
    def new_label(self) -> str:
        return str(self.WORDS[self.new])

    @classmethod
    def measure(cls, sync_settings: SyncSettings, new: str) -> "IdentifyByChange":
        organization = sync_settings.organization_id
        key = "email" if new == SyncSettings.IdentifyBy.EMAIL else "phone"
        users = DirectoryRecord.objects.filter(
            organization_id=organization,
            resource_type=DirectoryRecord.ResourceType.USER,
            deleted_at__isnull=True,
        )
        return cls(
            old=sync_settings.identify_by,
            new=new,
            unmatched=Member.objects.filter(
                Q(**{f"{key}__isnull": True}) | Q(**{key: ""}), organization_id=organization
            ).count(),
            linked=users.filter(member__isnull=False).count(),
            records_without_email=users.filter(work_email__isnull=True).count()
            if key == "email"
            else 0,
        )

    def done_message(self) -> str:
        return gettext(
            "Existing users are now identified by %(new)s instead of %(old)s, from the next "
            "provisioning cycle on. Members already linked to a directory user stay linked."
        ) % {"new": self.new_label, "old": self.old_label}


class SyncSettingsForm(forms.Form):
    """ "Set up in Beem": the rules the sync engine applies."""

    deletion_rule = forms.ChoiceField(
        label=_("Member deletion rule"),
        choices=SyncSettings.DeletionRule.choices,
        widget=forms.RadioSelect,
        initial=SyncSettings.DeletionRule.DELETE_DIRECTLY,
    )
    identify_by = forms.ChoiceField(
        label=_("Identify existing users by"),
        choices=SyncSettings.IdentifyBy.choices,
        widget=forms.RadioSelect,
        initial=SyncSettings.IdentifyBy.PHONE,
    )
    department_format = forms.ChoiceField(
        label=_("How the 'department' attribute is kept in the directory"),
        choices=SyncSettings.DepartmentFormat.choices,
        widget=forms.RadioSelect,
        initial=SyncSettings.DepartmentFormat.PLAIN_NAME,
    )
    department_delimiter = forms.CharField(
        label=_("Structure delimiter"),
        required=False,
        strip=False,
        max_length=5,
        initial="/",
        help_text=_("For example '/' in 'Head Office/Engineering/Platform'."),
        widget=forms.TextInput(attrs={"size": 5}),
    )
    duplicate_department_policy = forms.ChoiceField(
        label=_("When a department name matches several departments"),
        choices=SyncSettings.DuplicateDepartmentPolicy.choices,
        widget=forms.RadioSelect,
        initial=SyncSettings.DuplicateDepartmentPolicy.HOLD_FOR_ADMIN,
    )
    default_phone_country = forms.ChoiceField(
        label=_("Default phone country"),
        required=False,
        help_text=_(
            "Used only for numbers without a country code. Best practice is to keep the "
            "country code in the directory, e.g. +966512345678."
        ),
    )

    # Set after the first submission of a changed identify-by while sync is active.
    confirm_identify_by = forms.BooleanField(
        label=_("Yes, change the identification"), required=False
    )

    def __init__(self, *args, current: SyncSettings | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.current = current
        self.identify_by_change: IdentifyByChange | None = None
        self.fields["default_phone_country"].choices = phone_country_choices()

    @classmethod
    def initial_from(cls, sync_settings: SyncSettings | None) -> dict:
        if sync_settings is None:
            return {}
        return {name: getattr(sync_settings, name) for name in cls.setting_names()}

    @classmethod
    def setting_names(cls) -> list[str]:
        """The fields that are settings (the confirmation checkbox is not one)."""
        return [name for name in cls.base_fields if name != "confirm_identify_by"]

    def clean_department_delimiter(self) -> str:
        value = self.cleaned_data.get("department_delimiter") or ""
        if not value:
            return value
        if value.strip() != value or not value.strip():
            raise forms.ValidationError(
                _("The delimiter cannot contain spaces."), code="delimiter_space"
            )
        if any(ch.isalnum() or ch.isspace() or ch in _FORBIDDEN_DELIMITER_CHARS for ch in value):
            raise forms.ValidationError(
                _(
                    "Use a separator that never appears inside a department name, such as / "
                    "or \\ or > or |; letters, digits, spaces and %(chars)s are not allowed."
                ),
                code="delimiter_chars",
                params={"chars": " ".join(sorted(_FORBIDDEN_DELIMITER_CHARS))},
            )
        return value

    def clean(self):
        cleaned = super().clean()
        fmt = cleaned.get("department_format")
        if fmt == SyncSettings.DepartmentFormat.STRUCTURE_STRING:
            if not cleaned.get("department_delimiter") and "department_delimiter" not in (
                self.errors
            ):
                self.add_error(
                    "department_delimiter",
                    forms.ValidationError(
                        _("A complete structure string needs a delimiter."),
                        code="delimiter_required",
                    ),
                )
        elif not cleaned.get("department_delimiter") and "department_delimiter" not in (
            self.errors
        ):
            # Plain names ignore the delimiter; keep the stored default meaningful.
            cleaned["department_delimiter"] = "/"
        self._identify_by_confirm(cleaned)
        return cleaned

    def _identify_by_confirm(self, cleaned: dict) -> None:
        """Changing how existing users are identified while the sync runs changes who the next
        cycle matches, links or refuses: the administrator confirms it on a second submit."""
        # Not a setting: the services get the settings only.
        confirmed = cleaned.pop("confirm_identify_by", False)
        new = cleaned.get("identify_by")
        current = self.current
        if not new or current is None or not current.is_active or new == current.identify_by:
            return
        self.identify_by_change = IdentifyByChange.measure(current, new)
        if not confirmed:
            self.add_error(
                None,
                forms.ValidationError(
                    _(
                        "Changing how existing users are identified affects the next "
                        "provisioning cycle: read what will happen and confirm."
                    ),
                    code="identify_by_confirm",
                ),
            )


class EventFilterForm(forms.Form):
    """Filters of a run's change events (GET parameters)."""

    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("Any status"))] + list(ChangeEvent.Status.choices),
    )
    outcome = forms.ChoiceField(
        label=_("Outcome"),
        required=False,
        choices=[("", _("Any outcome"))] + list(ChangeEvent.Outcome.choices),
    )
    q = forms.CharField(label=_("Search"), required=False, max_length=200)


class DepartmentChoiceForm(forms.Form):
    department = forms.ModelChoiceField(
        label=_("Target department"), queryset=Department.objects.none()
    )

    def __init__(self, *args, candidates, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["department"]
        field.queryset = candidates
        # Every candidate shares the directory's name: each is named by its full path.
        labels = department_labels(candidates)
        field.label_from_instance = lambda department: labels.get(department.pk, department.name)


class DuplicateResolveForm(forms.Form):
    ACTIONS = [
        ("link", _("Link: they are the same person (the directory manages the existing member)")),
        ("keep_both", _("Keep both: they are different people")),
        ("merge", _("Merge into one member")),
    ]
    CONFIRMED = ("link", "merge")  # they delete a member: a confirmation step first
    action = forms.ChoiceField(label=_("Decision"), choices=ACTIONS)
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)


class ConfirmForm(forms.Form):
    """A confirmation step for destructive actions (stop, rotate)."""

    confirm = forms.BooleanField(label=_("I understand"), required=True)


class NewSecretForm(ConfirmForm):
    """Confirms "New client secret" for the secret the page was showing: a resubmitted form
    (a reload of the page that showed the new secret) must not replace that secret again. A
    post without the field (a script) replaces the current secret."""

    credentials_issued_at = forms.CharField(widget=forms.HiddenInput, required=False)
