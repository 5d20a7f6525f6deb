"""What the sync log and the audit log say, in sentences, in the reader's language.

Rendered when a page is shown (never stored): a change row says what happened to which Beem
member ("Linked to existing member Sara Al-Harbi", with a link), an audit entry says who did
what ("admin@demo.beem changed Department format from Department name only to Complete
department structure string") with the choices' labels instead of their stored values.
"""

from collections.abc import Callable

from django.db.models import Q
from django.urls import reverse
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from members.display import department_path_label
from members.models import AuditEntry, DeletionRule, Department
from members.selectors import department_path

from .forms import phone_country_choices
from .models import ChangeEvent, ReviewItem, SyncSettings


def _html(text: str, **parts) -> SafeString:
    """``text`` (a translated sentence with ``%(name)s`` parts) escaped, with its parts
    escaped unless they are already HTML (links)."""
    return mark_safe(
        conditional_escape(text) % {key: conditional_escape(value) for key, value in parts.items()}
    )


def _member_link(member) -> SafeString:
    return format_html(
        '<a href="{}" data-member-link="{}">{}</a>',
        reverse("members:member_detail", args=[member.pk]),
        member.pk,
        member.full_name or str(member),
    )


# --- the sync log --------------------------------------------------------------------------

_APPLIED_USER = {
    ChangeEvent.Outcome.CREATED: gettext_lazy("Created member %(member)s"),
    ChangeEvent.Outcome.LINKED: gettext_lazy("Linked to existing member %(member)s"),
    ChangeEvent.Outcome.UPDATED: gettext_lazy("Updated member %(member)s"),
    ChangeEvent.Outcome.UNCHANGED: gettext_lazy("No change needed for %(member)s"),
    ChangeEvent.Outcome.HELD: gettext_lazy("Member %(member)s held for review"),
    ChangeEvent.Outcome.DELETED: gettext_lazy("Deleted member %(member)s"),
}


def event_sentence(event: ChangeEvent) -> SafeString:
    """What a change did, in words, linked to the member or group it touched; the apply's
    notes (or the failure's reason) follow, in the reader's language (``notes.notes_render``)."""
    record = event.record if event.record_id else None
    member = record.member if record is not None and record.member_id else None
    group = record.group if record is not None and record.group_id else None
    Status, Outcome = ChangeEvent.Status, ChangeEvent.Outcome
    if event.status == Status.PENDING:
        sentence = _html(_("Waiting to be applied"))
    elif event.status == Status.SKIPPED:
        sentence = _html(_("Superseded by a later change"))
    elif event.status == Status.FAILED:
        return _html(_("Not applied: %(reason)s"), reason=event.reason_text)
    elif event.outcome in _APPLIED_USER:
        sentence = _html(
            str(_APPLIED_USER[event.outcome]),
            member=_member_link(member) if member is not None else event.label,
        )
    elif event.outcome == Outcome.GROUP_SYNCED:
        target = (
            format_html(
                '<a href="{}">{}</a>', reverse("members:group_detail", args=[group.pk]), group
            )
            if group is not None
            else event.label
        )
        sentence = _html(_("Synced group %(group)s"), group=target)
    elif event.outcome == Outcome.GROUP_DELETED:
        sentence = _html(_("Deleted group %(group)s"), group=event.label)
    else:
        sentence = _html(event.get_outcome_display() or event.get_status_display())
    notes = event.reason_text
    if notes:
        return _html(_("%(what)s; %(notes)s"), what=sentence, notes=notes)
    return sentence


def member_sync_notes(member) -> list[str]:
    """What the sync says about a member on their page, in the reader's language: the open
    review items about them, then the notes or reason of their directory user's last finished
    change (e.g. a value not synced), if it has any."""
    items = ReviewItem.objects.filter(
        Q(member=member) | Q(other_member=member), status=ReviewItem.Status.OPEN
    ).only("detail", "detail_notes")
    notes = [item.detail_text for item in items if item.detail_text]
    event = (
        ChangeEvent.objects.filter(record__member=member)
        .exclude(status__in=(ChangeEvent.Status.PENDING, ChangeEvent.Status.SKIPPED))
        .only("status", "reason", "reason_notes")
        .order_by("-id")
        .first()
    )
    if event is not None and event.reason_text:
        if event.status == ChangeEvent.Status.FAILED:
            notes.append(_("Last change not applied: %(reason)s") % {"reason": event.reason_text})
        else:
            notes.append(event.reason_text)
    return notes


# --- the audit log -------------------------------------------------------------------------


def actor_name(entry: AuditEntry) -> str:
    """The actor's name: the administrator's full name or login, Entra ID, an operator."""
    user = entry.actor
    if user is not None:
        return user.get_full_name() or user.get_username()
    label = entry.actor_label or ""
    if label.startswith("admin:"):
        return label.removeprefix("admin:")
    return {
        "directory": _("Entra ID"),
        "operator": _("An operator"),
        "system": _("Beem"),
    }.get(label, label)


SETTING_NAMES = {
    "deletion_rule": gettext_lazy("Member deletion rule"),
    "identify_by": gettext_lazy("Identify existing users by"),
    "department_format": gettext_lazy("Department format"),
    "department_delimiter": gettext_lazy("Structure delimiter"),
    "duplicate_department_policy": gettext_lazy("Department matching several departments"),
    "default_phone_country": gettext_lazy("Default phone country"),
}
SETTING_CHOICES = {
    "deletion_rule": DeletionRule,
    "identify_by": SyncSettings.IdentifyBy,
    "department_format": SyncSettings.DepartmentFormat,
    "duplicate_department_policy": SyncSettings.DuplicateDepartmentPolicy,
}
MEMBER_FIELD_NAMES = {
    "display_name": gettext_lazy("display name"),
    "given_name": gettext_lazy("given name"),
    "family_name": gettext_lazy("family name"),
    "phone": gettext_lazy("mobile phone"),
    "email": gettext_lazy("email"),
    "job_title": gettext_lazy("job title"),
    "country": gettext_lazy("country"),
    "employee_number": gettext_lazy("employee number"),
    "manager": gettext_lazy("manager"),
    "departments": gettext_lazy("departments"),
    "status": gettext_lazy("status"),
}


def _setting_value(name: str, value) -> str:
    if value in (None, ""):
        return _("none")
    choices = SETTING_CHOICES.get(name)
    if choices is not None:
        try:
            return str(choices(value).label)
        except ValueError:
            return str(value)
    if name == "default_phone_country":
        return dict(phone_country_choices()).get(value, value)
    return str(value)


def _settings_updated(actor: str, detail: dict) -> list[SafeString]:
    changed = detail.get("changed") or {}
    return [
        _html(
            _("%(actor)s changed %(setting)s from %(old)s to %(new)s"),
            actor=actor,
            setting=str(SETTING_NAMES.get(name, name)),
            old=_setting_value(name, (change or {}).get("from")),
            new=_setting_value(name, (change or {}).get("to")),
        )
        for name, change in changed.items()
    ]


def _directory_label(value) -> str:
    labels = dict(SyncSettings.Directory.choices)
    return str(labels.get(value, value or ""))


def _activated(actor: str, detail: dict) -> SafeString:
    again = detail.get("previous_status") == SyncSettings.Status.STOPPED
    if detail.get("directory") == SyncSettings.Directory.OKTA:
        text = (
            _("%(actor)s reactivated sync with Okta")
            if again
            else _("%(actor)s activated sync with Okta")
        )
        if detail.get("credentials_issued"):
            text = (
                _("%(actor)s reactivated sync with Okta and created a new API token")
                if again
                else _("%(actor)s activated sync with Okta and created its API token")
            )
        return _html(text, actor=actor)
    text = (
        _("%(actor)s reactivated sync with Entra ID")
        if again
        else _("%(actor)s activated sync with Entra ID")
    )
    if detail.get("credentials_issued"):
        text = (
            _("%(actor)s reactivated sync with Entra ID and created new credentials")
            if again
            else _("%(actor)s activated sync with Entra ID and created its credentials")
        )
    return _html(text, actor=actor)


def _member_edited(actor: str, detail: dict) -> SafeString:
    fields = ", ".join(str(MEMBER_FIELD_NAMES.get(f, f)) for f in detail.get("fields") or [])
    return _html(
        _("%(actor)s edited %(member)s: %(fields)s"),
        actor=actor,
        member=detail.get("member") or "",
        fields=fields,
    )


def _resources_moved(actor: str, detail: dict) -> list[SafeString]:
    member = detail.get("member") or ""
    lines = []
    if detail.get("unassigned"):
        n = detail["unassigned"]
        lines.append(
            _html(
                ngettext(
                    "%(actor)s deleted %(member)s; %(count)s resource moved to Unassigned",
                    "%(actor)s deleted %(member)s; %(count)s resources moved to Unassigned",
                    n,
                ),
                actor=actor,
                member=member,
                count=n,
            )
        )
    if detail.get("to_manager"):
        n = detail["to_manager"]
        lines.append(
            _html(
                ngettext(
                    "%(actor)s deleted %(member)s; %(count)s resource given to the manager",
                    "%(actor)s deleted %(member)s; %(count)s resources given to the manager",
                    n,
                ),
                actor=actor,
                member=member,
                count=n,
            )
        )
    return lines


def _merged(actor: str, detail: dict) -> SafeString:
    n = detail.get("resources") or 0
    return _html(
        ngettext(
            "%(actor)s merged %(source)s into %(target)s (%(count)s resource moved)",
            "%(actor)s merged %(source)s into %(target)s (%(count)s resources moved)",
            n,
        ),
        actor=actor,
        source=detail.get("source") or "",
        target=detail.get("target") or "",
        count=n,
    )


def _duplicate_resolved(actor: str, detail: dict) -> SafeString:
    texts = {
        "link": _(
            "%(actor)s linked the directory user to existing member %(other)s (%(member)s "
            "was merged into it)"
        ),
        "merge": _("%(actor)s merged %(other)s into %(member)s"),
        "keep_both": _("%(actor)s kept %(member)s and %(other)s as two members"),
    }
    text = texts.get(detail.get("action"), _("%(actor)s resolved a possible duplicate"))
    return _html(
        text,
        actor=actor,
        member=detail.get("directory_member_name") or "",
        other=detail.get("other_member_name") or "",
    )


def _department_chosen(actor: str, detail: dict) -> SafeString:
    department = Department.objects.filter(pk=detail.get("department")).first()
    path = (
        department_path_label(d.name for d in department_path(department))
        if department is not None
        else detail.get("department_name") or ""
    )
    return _html(
        _("%(actor)s placed members with department “%(value)s” in %(department)s"),
        actor=actor,
        value=detail.get("directory_value") or "",
        department=path,
    )


def _member_deleted(actor: str, detail: dict) -> SafeString:
    n = detail.get("resources") or 0
    if n and detail.get("to"):
        return _html(
            ngettext(
                "%(actor)s deleted member %(member)s and gave %(count)s resource to %(to)s",
                "%(actor)s deleted member %(member)s and gave %(count)s resources to %(to)s",
                n,
            ),
            actor=actor,
            member=detail.get("member") or "",
            count=n,
            to=detail["to"],
        )
    return _html(
        _("%(actor)s deleted member %(member)s"), actor=actor, member=detail.get("member") or ""
    )


def _department_changed(text) -> Callable[[str, dict], SafeString]:
    def render(actor: str, detail: dict) -> SafeString:
        return _html(
            str(text),
            actor=actor,
            old=detail.get("from") or "",
            new=detail.get("to") or "",
            department=detail.get("department") or "",
        )

    return render


def _reconcile(actor: str, detail: dict) -> SafeString:
    n = detail.get("records") or 0
    return _html(
        ngettext(
            "%(actor)s sent %(count)s directory record to be applied again",
            "%(actor)s sent %(count)s directory records to be applied again",
            n,
        ),
        actor=actor,
        count=n,
    )


def _reassigned(actor: str, detail: dict) -> SafeString:
    return _html(
        _("%(actor)s gave %(resource)s to %(to)s (previously %(from)s)"),
        actor=actor,
        resource=detail.get("resource") or "",
        to=detail.get("to") or "",
        **{"from": detail.get("from") or _("unassigned")},
    )


AUDIT_SENTENCES: dict[str, Callable[[str, dict], SafeString | list[SafeString]]] = {
    "sync.settings_updated": _settings_updated,
    "sync.activated": _activated,
    "sync.stopped": lambda actor, detail: _html(
        _("%(actor)s stopped sync with Okta; its API token is revoked")
        if detail.get("directory") == SyncSettings.Directory.OKTA
        else _("%(actor)s stopped sync with Entra ID"),
        actor=actor,
    ),
    "sync.credentials_issued": lambda actor, detail: _html(
        _("%(actor)s created the credentials (Client Identifier %(client_id)s)"),
        actor=actor,
        client_id=detail.get("client_id") or "",
    ),
    "sync.credentials_rotated": lambda actor, detail: _html(
        _("%(actor)s created a new client secret; the Client Identifier is unchanged"),
        actor=actor,
    ),
    "sync.api_token_issued": lambda actor, detail: _html(
        _("%(actor)s created the Okta API token"), actor=actor
    ),
    "sync.api_token_rotated": lambda actor, detail: _html(
        _("%(actor)s created a new Okta API token; the previous one no longer works"), actor=actor
    ),
    "sync.directory_switched": lambda actor, detail: _html(
        _("%(actor)s switched the directory from %(from)s to %(to)s"),
        actor=actor,
        **{
            "from": _directory_label(detail.get("from")),
            "to": _directory_label(detail.get("to")),
        },
    ),
    "sync.reconcile_requeued": _reconcile,
    "review.department_chosen": _department_chosen,
    "review.duplicate_resolved": _duplicate_resolved,
    "member.edited": _member_edited,
    "member.resources_moved": _resources_moved,
    "member.merged": _merged,
    "resource.reassigned": _reassigned,
    "member.created": lambda actor, detail: _html(
        _("%(actor)s created member %(member)s"), actor=actor, member=detail.get("member") or ""
    ),
    "member.deleted": _member_deleted,
    "department.created": _department_changed(
        gettext_lazy("%(actor)s created department %(department)s")
    ),
    "department.renamed": _department_changed(
        gettext_lazy("%(actor)s renamed department %(old)s to %(new)s")
    ),
    "department.moved": _department_changed(
        gettext_lazy("%(actor)s moved department %(old)s to %(new)s")
    ),
}


def audit_sentences(entry: AuditEntry) -> list[SafeString]:
    """One or more sentences (a settings change names each setting changed)."""
    actor = actor_name(entry)
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    render = AUDIT_SENTENCES.get(entry.action)
    if render is None:
        # An action without its sentence yet: readable words, never the raw key or a dict.
        words = entry.action.replace(".", " ").replace("_", " ")
        return [_html(_("%(actor)s: %(action)s"), actor=actor, action=words)]
    try:
        result = render(actor, detail)
    except (KeyError, TypeError, ValueError):
        result = _html(_("%(actor)s: %(action)s"), actor=actor, action=entry.action)
    sentences = result if isinstance(result, list) else [result]
    return sentences or [_html(_("%(actor)s saved without changes"), actor=actor)]


def with_sentences(entries):
    """The entries, each with ``sentences`` set (for a page of the audit log)."""
    entries = list(entries)
    for entry in entries:
        entry.sentences = audit_sentences(entry)
    return entries
