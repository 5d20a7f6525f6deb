"""What the members pages know of a directory integration, owned by members so that members
never imports directory_sync (issue 14): directory_sync registers its answers here in its
``AppConfig.ready()``. Without a registration no member is locked and none shows directory
attributes."""

from collections.abc import Callable
from dataclasses import dataclass

from .models import Member, Organization


@dataclass(frozen=True)
class DirectorySyncStatus:
    """An organization's directory sync as the members pages need it."""

    active: bool = False
    default_phone_country: str | None = None
    # How the sync finds an existing member: "phone" or "email" (None: no sync set up). A member
    # created by hand needs that identifier, or the sync cannot link them to their directory user.
    identify_by: str | None = None
    # The sync places departments by their complete path (a structure string): moving one it
    # created would make the next cycle create the path again. With plain names it finds a
    # department by name wherever it sits, so moving is safe.
    departments_by_path: bool = False
    # The directory the organization syncs with, as the pages name it ("Entra ID", "Okta").
    directory_name: str = ""


@dataclass(frozen=True)
class _Directory:
    status: Callable[[Organization], DirectorySyncStatus]
    member_attributes: Callable[[Member], list[tuple[str, str]]]
    member_notes: Callable[[Member], list[str]]


_directory = _Directory(
    status=lambda organization: DirectorySyncStatus(),
    member_attributes=lambda member: [],
    member_notes=lambda member: [],
)


def directory_register(
    *,
    status: Callable[[Organization], DirectorySyncStatus],
    member_attributes: Callable[[Member], list[tuple[str, str]]],
    member_notes: Callable[[Member], list[str]] = lambda member: [],
) -> None:
    """``status``: the organization's sync; ``member_attributes``: (path, value) of what the
    directory keeps about a member beyond what Beem applies; ``member_notes``: what the sync
    says about the member (its last apply's notes, open review items), in the reader's
    language."""
    global _directory
    _directory = _Directory(
        status=status, member_attributes=member_attributes, member_notes=member_notes
    )


def directory_sync_status(*, organization: Organization) -> DirectorySyncStatus:
    return _directory.status(organization)


def directory_member_attributes(*, member: Member) -> list[tuple[str, str]]:
    return _directory.member_attributes(member)


def directory_member_notes(*, member: Member) -> list[str]:
    return _directory.member_notes(member)
