"""What an apply produces: its result, the refusals it can meet, the notes for the event."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import DataError, IntegrityError, InterfaceError, OperationalError

from members import services as member_services

from ..models import ChangeEvent
from ..notes import Message

Outcome = ChangeEvent.Outcome
Status = ChangeEvent.Status


class ApplyError(Exception):
    """A permanent refusal: the directory data must change before this record can apply.
    ``message`` is kept structured for the event (read in the reader's language); the
    exception's text is English (logs)."""

    def __init__(self, message: Message | str):
        self.message = message
        super().__init__(message.english if isinstance(message, Message) else message)


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

    lines: list[Message] = field(default_factory=list)
    held: bool = False
    changed: bool = False

    def add(self, message: Message) -> None:
        self.lines.append(message)

    @property
    def text(self) -> str:
        """In English (logs, tests); pages render ``lines`` in the reader's language."""
        return " ".join(m.english for m in self.lines)
