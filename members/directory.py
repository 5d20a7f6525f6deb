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


@dataclass(frozen=True)
class _Directory:
    status: Callable[[Organization], DirectorySyncStatus]
    member_attributes: Callable[[Member], list[tuple[str, str]]]


_directory = _Directory(
    status=lambda organization: DirectorySyncStatus(), member_attributes=lambda member: []
)


def directory_register(
    *,
    status: Callable[[Organization], DirectorySyncStatus],
    member_attributes: Callable[[Member], list[tuple[str, str]]],
) -> None:
    """``status``: the organization's sync; ``member_attributes``: (path, value) of what the
    directory keeps about a member beyond what Beem applies."""
    global _directory
    _directory = _Directory(status=status, member_attributes=member_attributes)


def directory_sync_status(*, organization: Organization) -> DirectorySyncStatus:
    return _directory.status(organization)


def directory_member_attributes(*, member: Member) -> list[tuple[str, str]]:
    return _directory.member_attributes(member)
