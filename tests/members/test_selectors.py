import pytest
from django.db import connection

from members import selectors, services
from members.models import Member


def walk_forward(organization, *, search="", size=2) -> list[list[int]]:
    pages, after = [], None
    while True:
        page = selectors.member_page(
            organization=organization, search=search, after=after, size=size
        )
        pages.append([m.pk for m in page.members])
        if page.next_after is None:
            return pages
        after = page.next_after


@pytest.fixture
def same_names(organization):
    """Five members with the same display name: the keyset must break ties by id."""
    Member.objects.bulk_create(
        Member(organization=organization, display_name="Same", email=f"s{i}@acme.test")
        for i in range(5)
    )
    return list(Member.objects.order_by("id").values_list("id", flat=True))


def test_keyset_pages_cover_members_with_equal_names_exactly_once(organization, same_names):
    assert walk_forward(organization) == [same_names[0:2], same_names[2:4], same_names[4:]]


def test_keyset_previous_page_is_the_page_before(organization, same_names):
    last = selectors.member_page(organization=organization, after=("Same", same_names[3]), size=2)
    assert [m.pk for m in last.members] == [same_names[4]]
    back = selectors.member_page(organization=organization, before=last.previous_before, size=2)
    assert [m.pk for m in back.members] == same_names[2:4]
    first = selectors.member_page(organization=organization, before=back.previous_before, size=2)
    assert [m.pk for m in first.members] == same_names[0:2]
    assert first.previous_before is None


def test_keyset_search_pages_in_name_order(organization):
    for name in ("Carla", "Alice", "Bob", "Albert", "Zed"):
        services.member_create(
            organization=organization, display_name=name, email=f"{name.lower()}@acme.test"
        )
    pages = walk_forward(organization, search="l")
    names = [Member.objects.get(pk=pk).display_name for page in pages for pk in page]
    assert names == ["Albert", "Alice", "Carla"]


def test_member_page_is_scoped_to_the_organization(organization, other_organization):
    services.member_create(
        organization=other_organization, display_name="Outsider", email="o@globex.test"
    )
    page = selectors.member_page(organization=organization)
    assert page.members == [] and page.next_after is None


def test_member_find_matches_email_phone_or_employee_number(organization):
    sara = services.member_create(
        organization=organization,
        email="sara@acme.test",
        phone="+966512345678",
        employee_number="E-1",
    )
    for identifier in ("SARA@acme.test", "+966 51 234 5678", "E-1"):
        assert selectors.member_find(organization=organization, identifier=identifier) == [sara]
    assert selectors.member_find(organization=organization, identifier="nobody") == []


def test_search_indexes_exist_on_postgresql(require_postgres):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'members_member' "
            "AND indexname LIKE 'member_search_%%' ORDER BY indexname"
        )
        names = [row[0] for row in cursor.fetchall()]
    assert names == [
        "member_search_email_trgm",
        "member_search_employee",
        "member_search_name_trgm",
        "member_search_phone_trgm",
    ]
