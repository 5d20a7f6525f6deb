"""Forms of the members pages. They validate input; members.services does the writing."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from . import selectors
from .models import Department, Member, Organization
from .phones import InvalidPhoneNumber, phone_to_e164
from .services import DIRECTORY_OWNED_FIELDS, MEMBER_FIELDS


class MemberLookupField(forms.CharField):
    """A member of one organization, typed as their email, mobile number or employee number.

    A text lookup rather than a <select>: an organization can have 100,000 members.
    """

    def __init__(self, *, organization: Organization, default_country: str | None = None, **kw):
        kw.setdefault("help_text", _("Type the member's email, mobile number or employee number."))
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


class DepartmentChoiceField(forms.ModelMultipleChoiceField):
    def __init__(self, *, organization: Organization, **kw):
        tree = selectors.department_tree(organization=organization)
        self._labels: dict[int, str] = {}
        path: list[str] = []
        for department, depth in tree:
            path[depth:] = [department.name]
            self._labels[department.pk] = " / ".join(path)
        super().__init__(
            queryset=Department.objects.filter(organization=organization).order_by("name"), **kw
        )

    def label_from_instance(self, obj: Department) -> str:
        return self._labels.get(obj.pk, obj.name)


class MemberForm(forms.Form):
    """An administrator's edit of one member.

    ``locked_fields`` (directory-owned while sync is active) are rendered disabled; Django then
    ignores whatever a client posts for them, and the view never passes them to the service,
    which would refuse them anyway.
    """

    display_name = forms.CharField(label=_("Display name"), max_length=256, required=False)
    given_name = forms.CharField(label=_("Given name"), max_length=128, required=False)
    family_name = forms.CharField(label=_("Family name"), max_length=128, required=False)
    email = forms.EmailField(label=_("Email"), max_length=254, required=False)
    phone = forms.CharField(
        label=_("Mobile phone"),
        max_length=32,
        required=False,
        help_text=_("International format with the country code, e.g. +966512345678."),
    )
    job_title = forms.CharField(label=_("Job title"), max_length=256, required=False)
    country = forms.CharField(label=_("Country"), max_length=128, required=False)
    employee_number = forms.CharField(label=_("Employee number"), max_length=128, required=False)
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
        value = self.cleaned_data["phone"].strip()
        if not value or "phone" in self.locked_fields:
            return value
        try:
            return phone_to_e164(value, default_country=self.default_country)
        except InvalidPhoneNumber:
            raise forms.ValidationError(
                _(
                    "%(value)s is not a valid mobile number: use the international format with "
                    "the country code, e.g. +966512345678."
                ),
                params={"value": value},
                code="invalid_phone",
            )

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
