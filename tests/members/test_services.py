import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from members import services
from members.models import (
    AuditEntry,
    DeletionRule,
    Department,
    DepartmentMembership,
    GroupMembership,
    Member,
    Resource,
)


def make_member(organization, **fields):
    fields.setdefault("display_name", "Someone")
    return services.member_create(organization=organization, **fields)


# --- unique phone and email --------------------------------------------------------------


def test_member_phone_is_stored_in_e164(organization):
    member = make_member(organization, phone="+966 51 234 5678")
    member.refresh_from_db()
    assert member.phone == "+966512345678"


def test_member_phone_is_normalised_with_the_default_country(organization):
    member = make_member(organization, phone="0512345678", default_country="SA")
    assert member.phone == "+966512345678"


def test_invalid_phone_is_refused_on_the_phone_field(organization):
    with pytest.raises(services.MemberError) as exc:
        make_member(organization, phone="0512345678")
    assert exc.value.field == "phone"
    assert Member.objects.count() == 0


def test_same_phone_twice_in_one_organization_is_refused(organization):
    make_member(organization, phone="+966512345678")
    with pytest.raises(services.MemberError, match=r"\+966512345678") as exc:
        make_member(organization, phone="+966 51 234 5678")
    assert exc.value.field == "phone"
    assert Member.objects.filter(organization=organization).count() == 1


def test_same_phone_is_allowed_in_two_organizations(organization, other_organization):
    make_member(organization, phone="+966512345678")
    make_member(other_organization, phone="+966512345678")
    assert Member.objects.filter(phone="+966512345678").count() == 2


def test_email_is_stored_lower_cased(organization):
    member = make_member(organization, email="Sara.Harbi@Example.COM")
    member.refresh_from_db()
    assert member.email == "sara.harbi@example.com"


def test_same_email_in_another_case_is_refused_in_one_organization(organization):
    make_member(organization, email="sara@example.com")
    with pytest.raises(services.MemberError) as exc:
        make_member(organization, email="SARA@Example.com")
    assert exc.value.field == "email"


def test_same_email_is_allowed_in_two_organizations(organization, other_organization):
    make_member(organization, email="sara@example.com")
    make_member(other_organization, email="Sara@example.com")
    assert Member.objects.filter(email="sara@example.com").count() == 2


def test_database_refuses_a_duplicate_email_that_bypasses_the_service(organization):
    make_member(organization, email="sara@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        Member.objects.create(organization=organization, email="SARA@example.com")


def test_invalid_email_is_refused(organization):
    with pytest.raises(services.MemberError) as exc:
        make_member(organization, email="not-an-email")
    assert exc.value.field == "email"


def test_member_without_phone_or_email_is_refused(organization):
    with pytest.raises(services.MemberError, match="mobile number or an email"):
        make_member(organization, display_name="Nobody")


def test_update_to_another_members_phone_is_refused(organization):
    make_member(organization, phone="+966512345678")
    other = make_member(organization, phone="+966512345679")
    with pytest.raises(services.MemberError) as exc:
        services.member_update(member=other, phone="+966512345678")
    assert exc.value.field == "phone"
    other.refresh_from_db()
    assert other.phone == "+966512345679"


def test_update_reports_only_the_fields_that_changed(organization):
    member = make_member(organization, email="a@example.com", job_title="Engineer")
    _, changed = services.member_update(
        member=member, email="A@example.com", job_title="Lead engineer"
    )
    assert changed == ["job_title"]


# --- departments -------------------------------------------------------------------------


def test_department_names_are_unique_under_one_parent(organization):
    root = services.department_get_or_create(organization=organization, name="Head Office")
    Department.objects.create(organization=organization, name="Engineering", parent=root)
    with pytest.raises(IntegrityError), transaction.atomic():
        Department.objects.create(organization=organization, name="Engineering", parent=root)


def test_root_department_names_are_unique(organization):
    services.department_get_or_create(organization=organization, name="Head Office")
    with pytest.raises(IntegrityError), transaction.atomic():
        Department.objects.create(organization=organization, name="Head Office", parent=None)


def test_same_department_name_is_allowed_under_two_parents(organization):
    a = services.department_path_ensure(organization=organization, path=["Riyadh", "Sales"])
    b = services.department_path_ensure(organization=organization, path=["Jeddah", "Sales"])
    assert a.pk != b.pk
    assert a.parent.name == "Riyadh" and b.parent.name == "Jeddah"


def test_department_path_ensure_is_idempotent(organization):
    first = services.department_path_ensure(
        organization=organization, path=["Head Office", "Engineering", "Platform"]
    )
    again = services.department_path_ensure(
        organization=organization, path=[" Head Office ", "Engineering", "Platform"]
    )
    assert first.pk == again.pk
    assert Department.objects.filter(organization=organization).count() == 3
    assert [first.parent.name, first.parent.parent.name] == ["Engineering", "Head Office"]


def test_empty_department_path_is_refused(organization):
    with pytest.raises(services.MemberError):
        services.department_path_ensure(organization=organization, path=["", "  "])


def _links(member):
    return {
        (link.department.name, link.is_primary)
        for link in DepartmentMembership.objects.filter(member=member).select_related("department")
    }


def test_first_department_is_primary_by_default(organization):
    member = make_member(organization, email="a@example.com")
    sales = services.department_get_or_create(organization=organization, name="Sales")
    ops = services.department_get_or_create(organization=organization, name="Ops")
    services.member_departments_set(member=member, departments=[sales, ops])
    assert _links(member) == {("Sales", True), ("Ops", False)}


def test_explicit_primary_department_moves_the_primary_flag(organization):
    member = make_member(organization, email="a@example.com")
    sales = services.department_get_or_create(organization=organization, name="Sales")
    ops = services.department_get_or_create(organization=organization, name="Ops")
    services.member_departments_set(member=member, departments=[sales, ops])
    changed = services.member_departments_set(member=member, departments=[sales, ops], primary=ops)
    assert changed is True
    assert _links(member) == {("Sales", False), ("Ops", True)}


def test_setting_the_same_departments_again_changes_nothing(organization):
    member = make_member(organization, email="a@example.com")
    sales = services.department_get_or_create(organization=organization, name="Sales")
    services.member_departments_set(member=member, departments=[sales])
    assert services.member_departments_set(member=member, departments=[sales]) is False
    assert _links(member) == {("Sales", True)}


def test_departments_left_out_are_removed(organization):
    member = make_member(organization, email="a@example.com")
    sales = services.department_get_or_create(organization=organization, name="Sales")
    ops = services.department_get_or_create(organization=organization, name="Ops")
    services.member_departments_set(member=member, departments=[sales, ops])
    services.member_departments_set(member=member, departments=[ops])
    assert _links(member) == {("Ops", True)}
    assert services.member_departments_set(member=member, departments=[]) is True
    assert _links(member) == set()


# --- groups ------------------------------------------------------------------------------


def test_group_members_set_applies_only_the_differences(organization):
    a, b, c = (make_member(organization, email=f"{x}@example.com") for x in "abc")
    group = services.group_create(organization=organization, name="Engineers")
    assert services.group_members_set(group=group, member_ids=[a.pk, b.pk]) == (2, 0)
    kept = GroupMembership.objects.get(group=group, member=a)
    assert services.group_members_set(group=group, member_ids=[a.pk, c.pk]) == (1, 1)
    assert set(GroupMembership.objects.filter(group=group).values_list("member_id", flat=True)) == {
        a.pk,
        c.pk,
    }
    # The unchanged membership row was kept, not deleted and re-created.
    assert GroupMembership.objects.filter(pk=kept.pk).exists()


def test_group_members_set_twice_changes_nothing(organization):
    a = make_member(organization, email="a@example.com")
    group = services.group_create(organization=organization, name="Engineers")
    services.group_members_set(group=group, member_ids=[a.pk])
    assert services.group_members_set(group=group, member_ids=[a.pk]) == (0, 0)


def test_group_members_set_leaves_other_groups_alone(organization):
    a = make_member(organization, email="a@example.com")
    one = services.group_create(organization=organization, name="One")
    two = services.group_create(organization=organization, name="Two")
    services.group_members_set(group=one, member_ids=[a.pk])
    services.group_members_set(group=two, member_ids=[a.pk])
    services.group_members_set(group=one, member_ids=[])
    assert list(GroupMembership.objects.values_list("group__name", flat=True)) == ["Two"]


# --- deletion and resources --------------------------------------------------------------


def test_deleting_a_member_unassigns_their_resources(organization):
    member = make_member(organization, display_name="Sara Al-Harbi", email="sara@example.com")
    doc = services.resource_create(
        organization=organization, kind="document", name="Handbook", owner=member
    )
    result = services.member_delete(member=member)
    doc.refresh_from_db()
    assert (doc.owner_id, doc.previous_owner_name) == (None, "Sara Al-Harbi")
    assert doc.unassigned_at is not None
    assert (result.resources_unassigned, result.resources_to_manager) == (1, 0)
    assert not Member.objects.filter(pk=member.pk).exists()
    audit = AuditEntry.objects.get(action="member.resources_moved")
    assert audit.detail == {"member": "Sara Al-Harbi", "unassigned": 1, "to_manager": 0}


def test_deleting_a_member_can_give_their_resources_to_the_manager(organization):
    boss = make_member(organization, display_name="Boss", email="boss@example.com")
    member = make_member(organization, display_name="Omar", email="omar@example.com")
    services.member_update(member=member, manager=boss)
    flow = services.resource_create(
        organization=organization, kind="approval_flow", name="Leave", owner=member
    )
    result = services.member_delete(member=member, rule=DeletionRule.DELETE_TRANSFER_TO_MANAGER)
    flow.refresh_from_db()
    assert (flow.owner_id, flow.previous_owner_name, flow.unassigned_at) == (boss.pk, "Omar", None)
    assert (result.resources_unassigned, result.resources_to_manager) == (0, 1)


def test_deleting_a_member_without_manager_under_the_manager_rule_unassigns(organization):
    member = make_member(organization, display_name="Omar", email="omar@example.com")
    channel = services.resource_create(
        organization=organization, kind="channel", name="#general", owner=member
    )
    services.member_delete(member=member, rule=DeletionRule.DELETE_TRANSFER_TO_MANAGER)
    channel.refresh_from_db()
    assert channel.owner_id is None and channel.unassigned_at is not None


def test_resources_keep_their_original_owner_through_a_chain_of_deleted_managers(organization):
    carol = make_member(organization, display_name="Carol", email="carol@example.com")
    omar = make_member(organization, display_name="Omar", email="omar@example.com")
    sara = make_member(organization, display_name="Sara Al-Harbi", email="sara@example.com")
    services.member_update(member=omar, manager=carol)
    services.member_update(member=sara, manager=omar)
    doc = services.resource_create(
        organization=organization, kind="document", name="Handbook", owner=sara
    )
    rule = DeletionRule.DELETE_TRANSFER_TO_MANAGER

    services.member_delete(member=sara, rule=rule)
    services.member_delete(member=omar, rule=rule)
    services.member_delete(member=carol, rule=rule)  # no manager: unassigned

    doc.refresh_from_db()
    assert (doc.owner_id, doc.previous_owner_name) == (None, "Carol")
    assert doc.unassigned_at is not None
    assert [owner.name for owner in doc.deleted_owners] == ["Sara Al-Harbi", "Omar", "Carol"]
    deleted_at = [owner.deleted_at for owner in doc.deleted_owners]
    assert deleted_at == sorted(deleted_at) and deleted_at[-1] == doc.unassigned_at


def test_reassigning_keeps_the_provenance_of_a_resource(organization):
    sara = make_member(organization, display_name="Sara Al-Harbi", email="sara@example.com")
    doc = services.resource_create(
        organization=organization, kind="document", name="Handbook", owner=sara
    )
    services.member_delete(member=sara)
    heir = make_member(organization, display_name="Heir", email="heir@example.com")
    services.resource_reassign(resource=doc, owner=heir)
    services.member_delete(member=heir)

    doc.refresh_from_db()
    assert [owner.name for owner in doc.deleted_owners] == ["Sara Al-Harbi", "Heir"]


def test_member_delete_never_destroys_resources(organization):
    member = make_member(organization, email="a@example.com")
    for kind in ("document", "channel", "approval_flow"):
        services.resource_create(organization=organization, kind=kind, name=kind, owner=member)
    services.member_delete(member=member)
    assert Resource.objects.filter(organization=organization).count() == 3


def test_deleting_a_resource_owner_through_the_orm_is_refused(organization):
    member = make_member(organization, email="a@example.com")
    services.resource_create(organization=organization, kind="document", name="Doc", owner=member)
    with pytest.raises(ProtectedError), transaction.atomic():
        member.delete()
    assert Member.objects.filter(pk=member.pk).exists()
    assert Resource.objects.get().owner_id == member.pk


def test_reassigning_a_resource_to_a_member_of_another_organization_is_refused(
    organization, other_organization
):
    doc = services.resource_create(
        organization=organization, kind="document", name="Doc", owner=None
    )
    outsider = make_member(other_organization, email="x@globex.test")
    with pytest.raises(services.MemberError) as exc:
        services.resource_reassign(resource=doc, owner=outsider)
    assert exc.value.field == "owner"
    doc.refresh_from_db()
    assert doc.owner_id is None
    assert not AuditEntry.objects.filter(action="resource.reassigned").exists()


def test_reassigning_an_unassigned_resource_gives_it_an_owner_and_is_audited(
    organization, admin_user
):
    former = make_member(organization, display_name="Former", email="f@example.com")
    doc = services.resource_create(
        organization=organization, kind="document", name="Doc", owner=former
    )
    services.member_delete(member=former)
    heir = make_member(organization, display_name="Heir", email="h@example.com")
    services.resource_reassign(resource=doc, owner=heir, actor=admin_user)
    doc.refresh_from_db()
    assert (doc.owner_id, doc.unassigned_at) == (heir.pk, None)
    audit = AuditEntry.objects.get(action="resource.reassigned")
    assert audit.actor == admin_user and audit.actor_label == "admin:admin@acme"
    assert audit.detail == {"resource": "Doc", "from": "Former", "to": "Heir"}


# --- the administrator's member edit -----------------------------------------------------


def test_member_edit_saves_and_audits_the_changed_fields(organization, admin_user):
    member = make_member(organization, email="a@example.com", job_title="Engineer")
    _, changed = services.member_edit(
        member=member, actor=admin_user, job_title="Lead", status="suspended"
    )
    member.refresh_from_db()
    assert (member.job_title, member.status) == ("Lead", "suspended")
    assert sorted(changed) == ["job_title", "status"]
    audit = AuditEntry.objects.get(action="member.edited")
    assert audit.detail["member_id"] == member.pk
    assert sorted(audit.detail["fields"]) == ["job_title", "status"]


def test_member_edit_refuses_locked_fields(organization):
    member = make_member(organization, email="a@example.com", job_title="Engineer")
    with pytest.raises(services.MemberError, match="managed by directory sync") as exc:
        services.member_edit(
            member=member,
            locked_fields=services.DIRECTORY_OWNED_FIELDS,
            job_title="Hacked",
        )
    assert exc.value.field == "job_title"
    member.refresh_from_db()
    assert member.job_title == "Engineer"
    assert not AuditEntry.objects.filter(action="member.edited").exists()


def test_member_edit_refuses_locked_departments(organization):
    member = make_member(organization, email="a@example.com")
    sales = services.department_get_or_create(organization=organization, name="Sales")
    with pytest.raises(services.MemberError):
        services.member_edit(
            member=member, locked_fields={"departments"}, departments=[sales], status="active"
        )
    assert not DepartmentMembership.objects.exists()


def test_member_edit_refuses_a_department_of_another_organization(organization, other_organization):
    member = make_member(organization, email="a@example.com")
    foreign = services.department_get_or_create(organization=other_organization, name="Sales")
    with pytest.raises(services.MemberError):
        services.member_edit(member=member, departments=[foreign])
    assert not DepartmentMembership.objects.exists()


def test_member_edit_keeps_the_primary_department_when_it_stays(organization):
    member = make_member(organization, email="a@example.com")
    sales = services.department_get_or_create(organization=organization, name="Sales")
    ops = services.department_get_or_create(organization=organization, name="Ops")
    services.member_departments_set(member=member, departments=[sales, ops], primary=ops)
    hr = services.department_get_or_create(organization=organization, name="HR")
    _, changed = services.member_edit(member=member, departments=[hr, ops])
    assert changed == ["departments"]
    assert _links(member) == {("HR", False), ("Ops", True)}


def test_member_edit_refuses_a_manager_of_another_organization(organization, other_organization):
    member = make_member(organization, email="a@example.com")
    outsider = make_member(other_organization, email="x@globex.test")
    with pytest.raises(services.MemberError) as exc:
        services.member_edit(member=member, manager=outsider)
    assert exc.value.field == "manager"
    member.refresh_from_db()
    assert member.manager_id is None
