"""What an apply produces: its result, the refusals it can meet, the notes for the event."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import DataError

from members import services as member_services

from ..models import ChangeEvent

Outcome = ChangeEvent.Outcome
Status = ChangeEvent.Status


class ApplyError(Exception):
    """A permanent refusal: the directory data must change before this record can apply."""


# Errors that retrying cannot fix; anything else transient is retried by the task.
PERMANENT_ERRORS = (ApplyError, member_services.MemberError, DataError)


@dataclass
class ApplyResult:
    status: str
    outcome: str = ""
    reason: str = ""


@dataclass
class Notes:
    """What one apply did beyond the plain outcome, for the event's reason."""

    lines: list[str] = field(default_factory=list)
    held: bool = False
    changed: bool = False

    def add(self, text: str) -> None:
        self.lines.append(text)

    @property
    def text(self) -> str:
        return " ".join(self.lines)
