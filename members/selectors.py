"""Reads of the members domain, scoped to one organization."""

from django.db.models import Count, Prefetch, Q, QuerySet

from .models import Department, DepartmentMembership, Group, Member, Organization, Resource


def member_list(*, organization: Organization, search: str = "") -> QuerySet[Member]:
    """Members ordered by name; ``search`` matches name, email or phone (prefix)."""
    qs = Member.objects.filter(organization=organization)
    search = search.strip()
    if search:
        qs = qs.filter(
            Q(display_name__icontains=search)
            | Q(email__istartswith=search)
            | Q(phone__startswith=search if search.startswith("+") else "+" + search)
            | Q(employee_number=search)
        )
    return qs.order_by("display_name", "id")


def member_get(*, organization: Organization, pk: int) -> Member:
    return (
        Member.objects.select_related("manager")
        .prefetch_related(
            Prefetch(
                "department_links",
                queryset=DepartmentMembership.objects.select_related("department"),
            ),
            "group_links__group",
            "resources",
        )
        .get(organization=organization, pk=pk)
    )


def member_find_by_phone(*, organization: Organization, phone: str) -> Member | None:
    return Member.objects.filter(organization=organization, phone=phone).first()


def member_find_by_email(*, organization: Organization, email: str) -> Member | None:
    return Member.objects.filter(organization=organization, email__iexact=email).first()


def department_path(department: Department) -> list[Department]:
    """Root-first list of the department's ancestors and itself."""
    chain = []
    node = department
    seen = set()
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        chain.append(node)
        node = node.parent
    return list(reversed(chain))


def department_tree(*, organization: Organization) -> list[tuple[Department, int]]:
    """Depth-first (department, depth) pairs with member counts annotated, one query."""
    departments = list(
        Department.objects.filter(organization=organization)
        .annotate(member_count=Count("memberships"))
        .order_by("name")
    )
    children: dict[int | None, list[Department]] = {}
    for dep in departments:
        children.setdefault(dep.parent_id, []).append(dep)
    out: list[tuple[Department, int]] = []

    def walk(parent_id: int | None, depth: int) -> None:
        for dep in children.get(parent_id, []):
            out.append((dep, depth))
            walk(dep.pk, depth + 1)

    walk(None, 0)
    return out


def departments_named(*, organization: Organization, name: str) -> list[Department]:
    return list(
        Department.objects.filter(organization=organization, name=name.strip()).order_by("id")
    )


def group_list(*, organization: Organization) -> QuerySet[Group]:
    return (
        Group.objects.filter(organization=organization)
        .annotate(member_count=Count("memberships"))
        .order_by("name", "id")
    )


def resource_unassigned_list(*, organization: Organization) -> QuerySet[Resource]:
    return Resource.objects.filter(organization=organization, owner__isnull=True).order_by(
        "-unassigned_at", "id"
    )


def resource_list(*, organization: Organization) -> QuerySet[Resource]:
    return (
        Resource.objects.filter(organization=organization)
        .select_related("owner")
        .order_by("name", "id")
    )
