"""The apply engine's notes and reasons are stored structured (msgid and parameters) and read
in the reader's language on the run, review and member pages (issue 18); rows stored as plain
English text before that still show as they are."""

import pytest
from django.urls import reverse
from django.utils import translation

from directory_sync.engine import events_drain
from directory_sync.models import ChangeEvent, ProvisioningRun, ReviewItem
from directory_sync.notes import Message, notes_render, reason_parts
from members import services as member_services
from members.models import Member
from tests.directory_sync.engine_factories import (
    group_create,
    record_delete,
    sync_settings_make,
    user_create,
)

pytestmark = pytest.mark.django_db

REVIEW_URL = reverse("directory_sync:review_list")


def _get(client, url: str, language: str) -> str:
    client.cookies["django_language"] = language
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def run_with_notes(organization):
    """A run where Entra adds three users to a group, refuses one bad phone, then deletes a
    user who owns three resources."""
    sync_settings_make(organization, identify_by="phone")
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    users = [
        user_create(organization, run=run, user_name=f"u{i}@acme.test", phone=f"+96651234567{i}")
        for i in range(3)
    ]
    user_create(organization, run=run, user_name="bad@acme.test", phone="12")
    group_create(organization, display_name="Engineers", members=users, run=run)
    events_drain(organization_id=organization.pk)
    owner = Member.objects.get(phone="+966512345670")
    for name in ("Handbook", "Roadmap", "Budget"):
        member_services.resource_create(
            organization=organization, kind="document", name=name, owner=owner
        )
    record_delete(users[0], run=run)
    events_drain(organization_id=organization.pk)
    return run


def test_run_page_shows_the_engine_notes_in_arabic_with_plurals(admin_client, run_with_notes):
    url = reverse("directory_sync:run_detail", args=[run_with_notes.pk])

    html = _get(admin_client, url, "ar")

    assert "أُضيف 3 أعضاء، وأُزيل 0." in html  # 3 members added (Arabic plural form 3..10)
    assert "نُقلت 3 موارد إلى غير المُسندة." in html  # 3 resources moved to Unassigned
    assert "لا يمكن استخدام رقم الجوال لتحديد العضو:" in html  # the refusal's reason
    assert "بلا رمز الدولة؛ استخدم الصيغة الدولية" in html  # its nested phone error
    assert "has no country code" not in html
    assert "members added" not in html
    assert "moved to Unassigned" not in html
    assert "cannot be used to identify" not in html


def test_run_page_shows_the_same_notes_in_english(admin_client, run_with_notes):
    url = reverse("directory_sync:run_detail", args=[run_with_notes.pk])

    html = _get(admin_client, url, "en")

    assert "3 members added, 0 removed." in html
    assert "3 resources moved to Unassigned." in html
    assert "The mobile number cannot be used to identify the member:" in html
    assert "has no country code; use the international format" in html


def test_events_keep_the_english_text_next_to_the_structured_notes(run_with_notes):
    event = ChangeEvent.objects.get(outcome=ChangeEvent.Outcome.DELETED)

    assert event.reason == "3 resources moved to Unassigned."
    assert event.reason_notes == [
        {
            "msgid": "%(count)s resource moved to Unassigned.",
            "plural": "%(count)s resources moved to Unassigned.",
            "n": 3,
            "params": {"count": 3},
        }
    ]


def test_one_resource_reads_in_the_singular_arabic_form():
    text, notes = reason_parts(
        Message(
            "%(count)s resource moved to Unassigned.",
            plural="%(count)s resources moved to Unassigned.",
            n=1,
            count=1,
        )
    )

    assert text == "1 resource moved to Unassigned."
    with translation.override("ar"):
        assert notes_render(notes, text) == "نُقل مورد واحد إلى غير المُسندة."


@pytest.fixture
def department_hold(organization):
    """Entra sends department "Sales", which names two Beem departments: the member is held."""
    sync_settings_make(
        organization, identify_by="email", duplicate_department_policy="hold_for_admin"
    )
    for parent in ("Riyadh", "Jeddah"):
        member_services.department_path_ensure(organization=organization, path=[parent, "Sales"])
    user_create(
        organization, user_name="nora@acme.test", email="nora@acme.test", department="Sales"
    )
    events_drain(organization_id=organization.pk)
    return ReviewItem.objects.get(kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT)


def test_member_page_shows_the_sync_notes_in_the_readers_language(
    admin_client, organization, department_hold
):
    member = Member.objects.get(email="nora@acme.test")
    url = reverse("members:member_detail", args=[member.pk])

    arabic = _get(admin_client, url, "ar")
    english = _get(admin_client, url, "en")

    assert 'id="sync-notes"' in arabic
    assert "من مزامنة الدليل" in arabic
    # The open review item and the last apply's note ("held for an administrator").
    assert "اختر القسم المناسب لمستخدم الدليل" in arabic
    assert "القسم «Sales» يطابق 2 أقسام: بانتظار قرار المسؤول." in arabic
    assert "held for an administrator" not in arabic
    assert "From the directory sync" in english
    assert "Department “Sales” matches 2 departments: held for an administrator." in english


@pytest.fixture
def possible_duplicate(organization):
    """Lina was created in Beem by email; Entra identifies by phone and sends her email too."""
    sync_settings_make(organization, identify_by="phone")
    member_services.member_create(
        organization=organization, email="lina@acme.test", display_name="Lina (Beem)"
    )
    user_create(
        organization,
        user_name="lina@acme.test",
        display_name="Lina Nasser",
        phone="+966512345670",
        email="lina@acme.test",
    )
    events_drain(organization_id=organization.pk)
    return Member.objects.get(phone="+966512345670")


def test_review_page_shows_the_possible_duplicate_in_the_readers_language(
    admin_client, possible_duplicate
):
    arabic = _get(admin_client, REVIEW_URL, "ar")
    english = _get(admin_client, REVIEW_URL, "en")

    assert "تمت مزامنة مستخدم الدليل lina@acme.test مع العضو Lina Nasser" in arabic
    assert "البريد الإلكتروني" in arabic  # the nested "email" part, translated too
    assert "They may be the same person" not in arabic
    assert (
        "Directory user lina@acme.test was synced to member Lina Nasser, but member "
        "Lina (Beem) already has its email. They may be the same person." in english
    )


def test_member_page_names_a_value_not_synced_in_arabic(admin_client, possible_duplicate):
    """Nested parts are translated too: "The email" inside the possible-duplicate note."""
    url = reverse("members:member_detail", args=[possible_duplicate.pk])

    arabic = _get(admin_client, url, "ar")
    english = _get(admin_client, url, "en")

    assert "البريد الإلكتروني lina@acme.test يخص العضو Lina (Beem)؛ لم تتم مزامنته" in arabic
    assert "تمت مزامنة مستخدم الدليل lina@acme.test مع العضو" in arabic  # the review item
    assert "possible duplicate" not in arabic
    assert (
        "The email lina@acme.test belongs to member Lina (Beem); not synced (possible "
        "duplicate)." in english
    )


def test_old_plain_text_notes_still_show_as_stored(admin_client, organization):
    """Rows written before the notes were structured have only the English text."""
    sync_settings_make(organization, identify_by="phone")
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    record = user_create(organization, run=run, user_name="old@acme.test", phone="+966512345678")
    events_drain(organization_id=organization.pk)
    ChangeEvent.objects.filter(record=record).update(
        reason="Legacy note from an older version.", reason_notes=None
    )
    item = ReviewItem.objects.create(
        organization=organization,
        kind=ReviewItem.Kind.POSSIBLE_DUPLICATE,
        record=record,
        member=record.member if record.member_id else None,
        detail="Legacy review detail.",
    )

    run_html = _get(admin_client, reverse("directory_sync:run_detail", args=[run.pk]), "ar")
    review_html = _get(admin_client, REVIEW_URL, "ar")

    assert "Legacy note from an older version." in run_html
    assert "Legacy review detail." in review_html
    assert item.detail_text == "Legacy review detail."


def test_unreadable_stored_notes_fall_back_to_the_english_text():
    assert notes_render([{"params": {}}], "As stored.") == "As stored."
    assert notes_render([{"msgid": "%(missing)s", "params": {"x": 1}}], "As stored.") == (
        "As stored."
    )
    assert notes_render(None, "As stored.") == "As stored."


def test_a_failed_event_sent_again_forgets_its_structured_reason(organization, monkeypatch):
    """Pending again after a redispatch: the run page must not show the old failure's notes
    (the broker is down here, so the event stays pending)."""
    from directory_sync import redispatch

    sync_settings_make(organization, identify_by="phone")
    record = user_create(organization, user_name="bad@acme.test", phone="12")
    events_drain(organization_id=organization.pk)
    event = ChangeEvent.objects.get(record=record)
    assert (event.status, bool(event.reason_notes)) == ("failed", True)
    monkeypatch.setattr(redispatch, "change_event_dispatch", lambda event_ids, woken: 0)

    redispatch.change_events_redispatch(include_failed=True, older_than_seconds=0)

    event.refresh_from_db()
    assert (event.status, event.reason, event.reason_notes, event.reason_text) == (
        "pending",
        "",
        None,
        "",
    )
