"""Finishing change events: applied with the outcome, skipped as superseded, failed."""

from __future__ import annotations

import json

from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_noop

from ..models import ChangeEvent
from ..notes import Message, reason_parts
from .results import Status


def _dispatched_at(now):
    # When a job took the event: kept if the sweep had set it, else the finish time.
    return Coalesce(F("dispatched_at"), Value(now, output_field=DateTimeField()))


def superseded_reason(version: int) -> Message:
    return Message(
        gettext_noop("Superseded: the directory record was applied at version %(version)s."),
        version=version,
    )


def record_events_fail(*, record_id: int, reason) -> int:
    """Fail every pending event of the record (a drain gave up on it)."""
    text, notes = reason_parts(reason)
    return ChangeEvent.objects.filter(record_id=record_id, status=Status.PENDING).update(
        status=Status.FAILED, reason=text[:2000], reason_notes=notes, finished_at=timezone.now()
    )


def events_finish_many(results: dict[int, tuple[int, str, str, object]]) -> None:
    """Finish the events of many records: ``results`` maps a record id to (version, status,
    outcome, reason); a reason is a ``Message``, a list of them (the apply's notes) or plain
    text, stored as English text and structured notes (``notes.reason_parts``). Each record's
    newest event up to ``version`` gets the result, its older ones are skipped as superseded.
    Failed events count too when the record applied (or was already applied): a newer version
    or a later retry resolved them, no operator needed.
    One read, one update per distinct result."""
    if not results:
        return
    rows = (
        ChangeEvent.objects.filter(
            record_id__in=list(results), status__in=(Status.PENDING, Status.FAILED)
        )
        .order_by("record_id", "-record_version", "-id")
        .values_list("pk", "record_id", "record_version", "status")
    )
    updates: dict[tuple[str, str, str, str], list[int]] = {}
    notes_of: dict[str, list | None] = {}
    newest_done: set[int] = set()
    for pk, record_id, record_version, current in rows:
        version, status, outcome, reason = results[record_id]
        if record_version > version or (current == Status.FAILED and status == Status.FAILED):
            continue
        if record_id in newest_done:
            status, outcome, reason = Status.SKIPPED, "", superseded_reason(version)
        else:
            newest_done.add(record_id)
        text, notes = reason_parts(reason)
        # One update per distinct result: the notes join the key as their JSON text.
        notes_key = json.dumps(notes, sort_keys=True)
        notes_of[notes_key] = notes
        updates.setdefault((status, outcome, text, notes_key), []).append(pk)
    now = timezone.now()
    for (status, outcome, text, notes_key), pks in updates.items():
        ChangeEvent.objects.filter(pk__in=pks).update(
            status=status,
            outcome=outcome,
            reason=text,
            reason_notes=notes_of[notes_key],
            finished_at=now,
            dispatched_at=_dispatched_at(now),
        )
