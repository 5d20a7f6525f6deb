"""Forms of the members pages. They validate input; members.services does the writing."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from . import selectors
from .display import department_path_label
from .models import Department, Member, Organization
from .phones import EXAMPLE_E164, InvalidPhoneNumber, phone_to_e164
from .services import DIRECTORY_OWNED_FIELDS, MEMBER_FIELDS


def _max_length(name: str) -> int:
    """A member column's size: the limit the sync clips to and members.services checks."""
    return Member._meta.get_field(name).max_length


class MemberPickerInput(forms.TextInput):
    """A text input the member picker (``members/_member_picker.html``) turns into a search as
    you type; without JavaScript it stays a text input for an email, mobile or employee number."""

    def __init__(self, attrs=None):
        base = {
            "data-member-picker": reverse_lazy("members:member_search"),
            "autocomplete": "off",
            # A name in Arabic reads right to left, a typed +966... left to right.
            "dir": "auto",
            "placeholder": _("Name, email, mobile or employee number"),
            "size": 36,
        }
        super().__init__({**base, **(attrs or {})})


class MemberLookupField(forms.CharField):
    """A member of one organization, typed as their email, mobile number, employee number or
    exact name, or picked with the member picker (which fills in their email or mobile).

    A text lookup rather than a <select>: an organization can have 100,000 members. A form
    that fails keeps the text as typed.
    """

    widget = MemberPickerInput

    def __init__(self, *, organization: Organization, default_country: str | None = None, **kw):
        kw.setdefault(
            "help_text",
            _("Search by name, or type the member's email, mobile number or employee number."),
        )
        super().__init__(**kw)
        self.organization = organization
        self.default_country = default_country

    def prepare_value(self, value):
        if isinstance(value, Member):
            return value.email or value.phone or value.employee_number
        return value

    def clean(self, value):
        if isinstance(value, Member):
            return value
        text = super().clean(value)
        if not text:
            return None
        found = selectors.member_find(
            organization=self.organization, identifier=text, default_country=self.default_country
        )
        if not found:
            raise forms.ValidationError(
                _("No member of your organization has the email, mobile or employee number %(v)s."),
                params={"v": text},
                code="not_found",
            )
        if len(found) > 1:
            raise forms.ValidationError(
                _("Several members match %(v)s; use their email or mobile number."),
                params={"v": text},
                code="ambiguous",
            )
        return found[0]


def department_labels(*, organization: Organization) -> dict[int, str]:
    """Each department's full path ("Head Office › Engineering"), in tree order."""
    labels: dict[int, str] = {}
    path: list[str] = []
    for department, depth in selectors.department_tree(organization=organization):
        path[depth:] = [department.name]
        labels[department.pk] = department_path_label(path)
    return labels


class _DepartmentLabels:
    def _set_labels(self, organization: Organization) -> None:
        self._labels = department_labels(organization=organization)

    def label_from_instance(self, obj: Department) -> str:
        return self._labels.get(obj.pk, obj.name)


class DepartmentChoiceField(_DepartmentLabels, forms.ModelMultipleChoiceField):
    def __init__(self, *, organization: Organization, **kw):
        self._set_labels(organization)
        super().__init__(
            queryset=Department.objects.filter(organization=organization).order_by("name"), **kw
        )


class DepartmentSingleChoiceField(_DepartmentLabels, forms.ModelChoiceField):
    """One department of the organization, listed by full path in tree order."""

    def __init__(self, *, organization: Organization, **kw):
        self._set_labels(organization)
        super().__init__(queryset=Department.objects.filter(organization=organization), **kw)

    def _get_choices(self):
        by_pk = {d.pk: d for d in self.queryset}
        choices = [("", self.empty_label)] if self.empty_label is not None else []
        choices += [(pk, label) for pk, label in self._labels.items() if pk in by_pk]
        return choices

    choices = property(_get_choices, forms.ChoiceField.choices.fset)


def _phone_field() -> forms.CharField:
    # Longer than E.164 (16): admins type spaces and dashes; the stored value is E.164.
    return forms.CharField(
        label=_("Mobile phone"),
        max_length=32,
        required=False,
        help_text=_("International format with the country code, e.g. +966512345678."),
        # Numbers are typed and read left to right, also in Arabic.
        widget=forms.TextInput(attrs={"dir": "ltr", "inputmode": "tel"}),
    )


def clean_mobile(value: str, *, default_country: str | None) -> str:
    """A typed mobile number as E.164 (``members.phones``, as the sync reads Entra's), or a
    form error saying the format; empty stays empty."""
    value = (value or "").strip()
    if not value:
        return value
    try:
        return phone_to_e164(value, default_country=default_country)
    except InvalidPhoneNumber:
        raise forms.ValidationError(
            _(
                "%(value)s is not a valid mobile number: use the international format with "
                "the country code, e.g. %(example)s."
            ),
            params={"value": value, "example": EXAMPLE_E164},
            code="invalid_phone",
        )


class MemberForm(forms.Form):
    """An administrator's edit of one member.

    ``locked_fields`` (directory-owned while sync is active) are rendered disabled; Django then
    ignores whatever a client posts for them, and the view never passes them to the service,
    which would refuse them anyway.
    """

    display_name = forms.CharField(
        label=_("Display name"), max_length=_max_length("display_name"), required=False
    )
    given_name = forms.CharField(
        label=_("Given name"), max_length=_max_length("given_name"), required=False
    )
    family_name = forms.CharField(
        label=_("Family name"), max_length=_max_length("family_name"), required=False
    )
    email = forms.EmailField(
        label=_("Email"),
        max_length=_max_length("email"),
        required=False,
        widget=forms.EmailInput(attrs={"dir": "ltr"}),
    )
    phone = _phone_field()
    job_title = forms.CharField(
        label=_("Job title"), max_length=_max_length("job_title"), required=False
    )
    country = forms.CharField(label=_("Country"), max_length=_max_length("country"), required=False)
    employee_number = forms.CharField(
        label=_("Employee number"), max_length=_max_length("employee_number"), required=False
    )
    status = forms.ChoiceField(label=_("Status"), choices=Member.Status.choices)
    department_display = forms.ChoiceField(
        label=_("Department shown on the profile"), choices=Member.DepartmentDisplay.choices
    )

    def __init__(
        self,
        *args,
        member: Member,
        locked_fields: frozenset[str] = frozenset(),
        default_country: str | None = None,
        **kwargs,
    ):
        self.member = member
        self.default_country = default_country
        kwargs.setdefault("initial", self.initial_for(member))
        super().__init__(*args, **kwargs)
        organization = member.organization
        self.fields["manager"] = MemberLookupField(
            label=_("Manager"),
            required=False,
            organization=organization,
            default_country=default_country,
        )
        self.fields["departments"] = DepartmentChoiceField(
            label=_("Departments"), required=False, organization=organization
        )
        self.locked_fields = frozenset(locked_fields) & DIRECTORY_OWNED_FIELDS
        for name in self.locked_fields:
            self.fields[name].disabled = True

    @staticmethod
    def initial_for(member: Member) -> dict:
        initial = {name: getattr(member, name) or "" for name in MEMBER_FIELDS}
        initial["status"] = member.status
        initial["department_display"] = member.department_display
        initial["manager"] = member.manager
        initial["departments"] = [link.department_id for link in member.department_links.all()]
        return initial

    def clean_phone(self) -> str:
        if "phone" in self.locked_fields:
            return self.cleaned_data["phone"].strip()
        return clean_mobile(self.cleaned_data["phone"], default_country=self.default_country)

    def clean_manager(self) -> Member | None:
        manager = self.cleaned_data.get("manager")
        if manager is not None and manager.pk == self.member.pk:
            raise forms.ValidationError(_("A member cannot be their own manager."))
        return manager

    def service_arguments(self) -> dict:
        """cleaned_data without the locked fields, shaped for services.member_edit."""
        data = {k: v for k, v in self.cleaned_data.items() if k not in self.locked_fields}
        if "departments" in data:
            data["departments"] = list(data["departments"])
        return data


class MemberCreateForm(forms.Form):
    """An administrator's new member: the fields a directory would send, validated as the sync
    validates them (E.164 mobile, email, the member columns' lengths). ``identify_by`` (from
    the organization's sync) makes its identifier required."""

    display_name = forms.CharField(label=_("Name"), max_length=_max_length("display_name"))
    email = forms.EmailField(
        label=_("Email"),
        max_length=_max_length("email"),
        required=False,
        widget=forms.EmailInput(attrs={"dir": "ltr"}),
    )
    phone = _phone_field()
    job_title = forms.CharField(
        label=_("Job title"), max_length=_max_length("job_title"), required=False
    )
    employee_number = forms.CharField(
        label=_("Employee number"), max_length=_max_length("employee_number"), required=False
    )

    def __init__(
        self,
        *args,
        organization: Organization,
        identify_by: str | None = None,
        default_country: str | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.identify_by = identify_by
        self.default_country = default_country
        self.fields["department"] = DepartmentSingleChoiceField(
            label=_("Department"), required=False, organization=organization
        )
        self.fields["manager"] = MemberLookupField(
            label=_("Manager"),
            required=False,
            organization=organization,
            default_country=default_country,
        )
        if identify_by == "phone":
            self.fields["phone"].required = True
            self.fields["phone"].help_text = _(
                "Required: directory sync identifies members by mobile number. International "
                "format with the country code, e.g. +966512345678."
            )
        elif identify_by == "email":
            self.fields["email"].required = True
            self.fields["email"].help_text = _(
                "Required: directory sync identifies members by email address."
            )

    def clean_phone(self) -> str:
        return clean_mobile(self.cleaned_data["phone"], default_country=self.default_country)

    def clean(self) -> dict:
        data = super().clean()
        if not self.errors and not data.get("phone") and not data.get("email"):
            raise forms.ValidationError(
                _("A member needs a mobile number or an email address."), code="no_identifier"
            )
        return data

    def service_arguments(self) -> dict:
        """cleaned_data shaped for services.member_create_by_admin."""
        data = dict(self.cleaned_data)
        department = data.pop("department", None)
        data["departments"] = [department] if department else []
        return data


class MemberDeleteForm(forms.Form):
    """Who receives the resources of the member being deleted (needed when they own any)."""

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["heir"] = MemberLookupField(
            label=_("Give their resources to"), required=False, organization=organization
        )


class DepartmentForm(forms.Form):
    """A department's name and place: a new one, or a rename and move of an existing one."""

    name = forms.CharField(
        label=_("Name"), max_length=Department._meta.get_field("name").max_length
    )

    def __init__(
        self,
        *args,
        organization: Organization,
        department: Department | None = None,
        name_locked: bool = False,
        parent_locked: bool = False,
        **kwargs,
    ):
        if department is not None:
            kwargs.setdefault("initial", {"name": department.name, "parent": department.parent_id})
        super().__init__(*args, **kwargs)
        parent = DepartmentSingleChoiceField(
            label=_("Inside"),
            required=False,
            organization=organization,
            empty_label=_("(top level)"),
        )
        if department is not None:
            # Not under itself: the service refuses its descendants too, with a message.
            parent.queryset = parent.queryset.exclude(pk=department.pk)
        self.fields["parent"] = parent
        self.fields["name"].disabled = name_locked
        self.fields["parent"].disabled = parent_locked


class ResourceReassignForm(forms.Form):
    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"] = MemberLookupField(
            label=_("New owner"), required=True, organization=organization
        )


class MemberSearchForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=200)


class LoginForm(AuthenticationForm):
    """The suite's login: administrators log in with their email address (their user name)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _(
            "Please enter the correct email and password. Note that the password is case-sensitive."
        ),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].label = _("Email")
        self.fields["username"].widget.attrs["autocomplete"] = "email"
