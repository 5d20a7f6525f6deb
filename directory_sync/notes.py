"""Notes and reasons the sync stores for people to read, kept structured so that each reader
reads them in their own language.

The apply engine runs in a worker (English), but an administrator reads its notes in English
or Arabic. A note is therefore stored as its English msgid with its parameters (JSON, see
``Message.data``) and translated when a page shows it (``notes_render``). Next to it the engine
still stores the English text (``ChangeEvent.reason``, ``ReviewItem.detail``): for logs,
search, operator commands and rows written before the notes were structured, which
``notes_render`` shows as they are.

Stored shape, one dict per message: ``{"msgid": ..., "params": {...}}`` plus, for a plural,
``"plural"`` and ``"n"`` (the count that chooses the form). A parameter is a plain value or
a message of the same shape (a translated part such as "The mobile number").
"""

from __future__ import annotations

from django.utils import translation
from django.utils.translation import gettext, ngettext


class Message:
    """A sentence kept as msgid and parameters; ``str()`` renders it in the active language."""

    __slots__ = ("msgid", "plural", "n", "params")

    def __init__(self, msgid: str, *, plural: str = "", n: int | None = None, **params):
        self.msgid, self.plural, self.n, self.params = msgid, plural, n, params

    @property
    def data(self) -> dict:
        params = {
            key: value.data if isinstance(value, Message) else value
            for key, value in self.params.items()
        }
        data = {"msgid": self.msgid, "params": params}
        if self.plural:
            data["plural"], data["n"] = self.plural, self.n
        return data

    def __str__(self) -> str:
        return message_render(self.data)

    @property
    def english(self) -> str:
        with translation.override("en"):
            return str(self)

    def __repr__(self) -> str:
        return f"Message({self.english!r})"


def ngettext_message(singular: str, plural: str, n: int, **params) -> Message:
    """A plural message; callers import it as ``ngettext`` so that ``makemessages`` (xgettext's
    Python keywords) extracts both forms. Singular ones use ``Message(gettext_noop(...))``."""
    return Message(singular, plural=plural, n=n, **params)


def message_render(data: dict) -> str:
    """One stored message in the active language."""
    params = {
        key: message_render(value) if isinstance(value, dict) and "msgid" in value else value
        for key, value in (data.get("params") or {}).items()
    }
    if data.get("plural"):
        text = ngettext(data["msgid"], data["plural"], int(data.get("n") or 0))
    else:
        text = gettext(data["msgid"])
    return text % params if params else text


def notes_render(data, fallback: str = "") -> str:
    """Stored notes (a list of messages) in the active language, joined as sentences; the
    stored English text ``fallback`` when there are none or they cannot be read (rows written
    before the notes were structured)."""
    if not isinstance(data, list) or not data:
        return fallback
    try:
        return " ".join(message_render(item) for item in data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return fallback


def reason_parts(reason) -> tuple[str, list | None]:
    """``reason`` (a Message, a list of them, or plain text) as the columns store it: the
    English text and the structured notes (``None`` for plain text)."""
    if isinstance(reason, Message):
        reason = [reason]
    if isinstance(reason, list | tuple):
        if not reason:
            return "", None
        with translation.override("en"):
            return " ".join(str(m) for m in reason), [m.data for m in reason]
    return str(reason or ""), None


def review_detail(message: Message) -> dict:
    """A review item's ``detail`` (English) and ``detail_notes`` (structured) columns."""
    text, notes = reason_parts(message)
    return {"detail": text, "detail_notes": notes}


def exception_reason(exc: BaseException):
    """What a refusal says: its Message when it carries one (``ApplyError``, or a member
    service error with ``msgid`` and ``params``), else its text."""
    message = getattr(exc, "message", None)
    if isinstance(message, Message):
        return message
    msgid = getattr(exc, "msgid", None)
    if msgid:
        return Message(msgid, **(getattr(exc, "params", None) or {}))
    return str(exc) or exc.__class__.__name__
