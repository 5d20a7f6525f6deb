"""Reads of the members domain, scoped to one organization."""

from dataclasses import dataclass

from django.db.models import CharField, Count, F, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Concat

from .models import Department, DepartmentMembership, Group, Member, Organization, Resource
from .phones import phone_or_none


def _member_search_q(search: str) -> Q:
    """Name (contains), email (prefix), phone (E.164 prefix) or employee number (exact).

    Every column here is indexed for this search on PostgreSQL (migration
    ``0002_member_search_indexes``: trigram GIN on ``UPPER(display_name)``, email and phone, a
    btree on employee number), so an OR of them is a BitmapOr instead of a scan of all 100,000
    members. The display name carries the given and family names, which are not searched.
    """
    q = (
        Q(display_name__icontains=search)
        # Emails are stored lower-cased, so a plain prefix match is case-insensitive.
        | Q(email__startswith=search.lower())
        | Q(employee_number=search)
    )
    digits = "".join(ch for ch in search if ch.isdigit())
    # Admins type numbers with spaces or dashes ("+966 51 234"); phones are stored as E.164.
    if digits and len(digits) >= 3 and set(search) <= set("+0123456789 -()."):
        q |= Q(phone__startswith="+" + digits)
    return q


def member_list(*, organization: Organization, search: str = "") -> QuerySet[Member]:
    """Members ordered by name; ``search`` matches name, email, phone or employee number."""
    qs = Member.objects.filter(organization=organization)
    search = search.strip()
    if search:
        return qs.filter(_member_search_q(search)).order_by(*_search_ordering())
    return qs.order_by("display_name", "id")


def _search_ordering(*, descending: bool = False) -> tuple:
    """The name order, written so PostgreSQL cannot read it off the ``member_org_name`` index.

    With ORDER BY display_name LIMIT 51 the planner walks that index and filters row by row,
    betting matches are spread evenly; for a common name late in the alphabet that reads
    most of the organization's rows. Ordering by ``display_name || ''`` (the same order) makes
    it use the search indexes and sort only the matches.
    """
    name = Concat(F("display_name"), Value(""), output_field=CharField())
    if descending:
        return (name.desc(), "-id")
    return (name.asc(), "id")


@dataclass(frozen=True)
class MemberPage:
    """One page of the members list; cursors are (display_name, id) of the edge rows."""

    members: list[Member]
    next_after: tuple[str, int] | None
    previous_before: tuple[str, int] | None


def member_page(
    *,
    organization: Organization,
    search: str = "",
    after: tuple[str, int] | None = None,
    before: tuple[str, int] | None = None,
    size: int = 50,
) -> MemberPage:
    """A keyset page of ``member_list``: no OFFSET and no COUNT, so page 2,000 of 100,000
    members costs the same as page 1 (an index range scan on ``member_org_name``)."""
    search = search.strip()
    qs = member_list(organization=organization, search=search)
    if before is not None:
        name, pk = before
        backwards = _search_ordering(descending=True) if search else ("-display_name", "-id")
        # The redundant ``lte`` lets the database bound the index range on display_name.
        rows = list(
            qs.filter(display_name__lte=name)
            .filter(Q(display_name__lt=name) | Q(display_name=name, id__lt=pk))
            .order_by(*backwards)[: size + 1]
        )
        has_more_before = len(rows) > size
        rows = list(reversed(rows[:size]))
        has_more_after = True
    else:
        if after is not None:
            name, pk = after
            qs = qs.filter(display_name__gte=name).filter(
                Q(display_name__gt=name) | Q(display_name=name, id__gt=pk)
            )
        rows = list(qs[: size + 1])
        has_more_after = len(rows) > size
        rows = rows[:size]
        has_more_before = after is not None
    if not rows:
        return MemberPage(members=[], next_after=None, previous_before=None)
    first, last = rows[0], rows[-1]
    return MemberPage(
        members=rows,
        next_after=(last.display_name, last.pk) if has_more_after else None,
        previous_before=(first.display_name, first.pk) if has_more_before else None,
    )


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


def member_find(
    *, organization: Organization, identifier: str, default_country: str | None = None
) -> list[Member]:
    """Members whose email, mobile number or employee number is ``identifier``, or else whose
    display name is exactly it, ignoring case (at most 2, so the caller can tell "none", "one"
    and "ambiguous" apart). The name is asked only when no identifier matches: an exact
    identifier always wins over a namesake."""
    text = identifier.strip()
    if not text:
        return []
    q = Q(email=text.lower()) | Q(employee_number=text)
    phone = phone_or_none(text, default_country=default_country)
    if phone:
        q |= Q(phone=phone)
    found = list(Member.objects.filter(q, organization=organization).order_by("id")[:2])
    if found:
        return found
    # UPPER(display_name) = UPPER(...): served by the trigram index of migration 0002.
    return list(
        Member.objects.filter(organization=organization, display_name__iexact=text).order_by("id")[
            :2
        ]
    )


MEMBER_SEARCH_MIN_LENGTH = 3


def member_search_page(
    *, organization: Organization, search: str, after: tuple[str, int] | None, size: int
) -> MemberPage:
    """A page of members for the member picker: ``member_page``'s keyset over the indexed
    search, from ``MEMBER_SEARCH_MIN_LENGTH`` characters (fewer cannot use the trigram
    indexes); an empty search pages through everyone by name (an index range scan)."""
    search = search.strip()
    if search and len(search) < MEMBER_SEARCH_MIN_LENGTH:
        return MemberPage(members=[], next_after=None, previous_before=None)
    return member_page(organization=organization, search=search, after=after, size=size)


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


def group_member_list(*, group: Group) -> QuerySet[Member]:
    return Member.objects.filter(
        organization_id=group.organization_id, group_links__group=group
    ).order_by("display_name", "id")


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
