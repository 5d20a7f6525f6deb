"""What an apply produces: its result, the refusals it can meet, the notes for the event."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import DataError, IntegrityError, InterfaceError, OperationalError

from members import services as member_services

from ..models import ChangeEvent

Outcome = ChangeEvent.Outcome
Status = ChangeEvent.Status


class ApplyError(Exception):
    """A permanent refusal: the directory data must change before this record can apply."""


# Errors that retrying cannot fix; anything else transient is retried by the task.
PERMANENT_ERRORS = (ApplyError, member_services.MemberError, DataError)

# Worth another try (the task retries them with backoff): deadlocks, lock and statement
# timeouts, serialization failures and lost connections (OperationalError, InterfaceError), and
# unique races between two jobs creating the same row (IntegrityError; the retry sees the
# winner's row and converges).
TRANSIENT_ERRORS = (OperationalError, InterfaceError, IntegrityError)


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
