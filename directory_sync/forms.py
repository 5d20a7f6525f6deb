"""Forms of the "Sync with Entra ID" pages. They validate input; services write."""

from functools import lru_cache

import phonenumbers
from django import forms
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from phonenumbers import geocoder

from members.models import Department

from .models import ChangeEvent, SyncSettings

# Characters that would split ordinary department names ("R&D", "Sales 2") if used as the
# structure delimiter.
_FORBIDDEN_DELIMITER_CHARS = set("&-_'\".")


@lru_cache(maxsize=8)
def _region_choices(language: str) -> tuple[tuple[str, str], ...]:
    lang = (language or "en").split("-")[0]
    rows = []
    for region in phonenumbers.SUPPORTED_REGIONS:
        # geocoder's region names come with phonenumbers in many languages, Arabic included.
        name = geocoder._region_display_name(region, lang) or geocoder._region_display_name(
            region, "en"
        )
        code = phonenumbers.country_code_for_region(region)
        rows.append((region, f"{name or region} (+{code})"))
    rows.sort(key=lambda row: row[1])
    return tuple(rows)


def phone_country_choices() -> list[tuple[str, str]]:
    return [("", _("None: numbers must carry their country code"))] + list(
        _region_choices(get_language() or "en")
    )


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
            "country code in Entra ID, e.g. +966512345678."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["default_phone_country"].choices = phone_country_choices()

    @classmethod
    def initial_from(cls, sync_settings: SyncSettings | None) -> dict:
        if sync_settings is None:
            return {}
        return {name: getattr(sync_settings, name) for name in cls.base_fields}

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
        return cleaned


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
        self.fields["department"].queryset = candidates


class DuplicateResolveForm(forms.Form):
    ACTIONS = [
        ("link", _("Link: they are the same person (the directory manages the existing member)")),
        ("keep_both", _("Keep both: they are different people")),
        ("merge", _("Merge into one member")),
    ]
    action = forms.ChoiceField(label=_("Decision"), choices=ACTIONS)


class ConfirmForm(forms.Form):
    """A confirmation step for destructive actions (stop, rotate)."""

    confirm = forms.BooleanField(label=_("I understand"), required=True)


class NewSecretForm(ConfirmForm):
    """Confirms "New client secret" for the secret the page was showing: a resubmitted form
    (a reload of the page that showed the new secret) must not replace that secret again. A
    post without the field (a script) replaces the current secret."""

    credentials_issued_at = forms.CharField(widget=forms.HiddenInput, required=False)
