"""Provisioning runs: one Entra ID cycle (or Test Connection) each.

Entra starts every cycle, and every Test Connection, with
``GET /Users?filter=userName eq "<random GUID>"`` — a lookup that matches nobody. That probe
closes the organization's current run and opens a new one (trigger "probe") and records the
Test Connection time. Without a probe, a request arriving after ``BEEM_RUN_IDLE_MINUTES`` of
silence opens a new run (trigger "activity"); the beat task closes runs idle that long.

Request counts and the organization's "last request" time are batched per process (at most
one UPDATE per run per ``BEEM_RUN_COUNT_FLUSH_SECONDS``, default 1 s) so a burst of Entra calls
does not queue on one row lock. They are written by the next read once the interval passed,
or by the process's background flusher (``flusher.background_flusher_ensure``) when no
request comes: the run page is exact within a few seconds. Never inside a write's
transaction, which would hold other runs' row locks until its commit. A process that stops
loses at most that last second of counts.

A write (POST, PUT, PATCH) refused with a 4xx is a failure of its run: ``refusal_record``
keeps its reason and the directory object it was about (``RefusedRequest``), next to the
change events whose apply failed. Only refused writes pay for it.
"""

import atexit
import json
import logging
import re
import threading
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import connection, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce, Greatest
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from . import directories, flusher, process_state
from .models import ChangeEvent, DirectoryRecord, ProvisioningRun, RefusedRequest, SyncSettings
from .store import db, reads
from .store.reads import run_current
from .text import storable_text

logger = logging.getLogger(__name__)

_PROBE_FILTER = re.compile(r'^\s*userName\s+eq\s+"([^"]*)"\s*$', re.IGNORECASE)

# run id -> [requests not yet written, latest activity]
_pending: dict[int, list] = {}
# sync settings id -> latest request time not yet written to last_request_at
_last_request_pending: dict[int, datetime] = {}
# sync settings id -> monotonic time this process last wrote last_request_at itself
_last_request_written: dict[int, float] = {}
_pending_lock = threading.Lock()
_last_flush = time.monotonic()
# last_request_at is informational ("Entra last called at ..."): the first request after a
# quiet spell writes it at once; later ones are batched with the run counts.
LAST_REQUEST_WRITE_SECONDS = 5.0


def _idle_gap() -> timedelta:
    return timedelta(minutes=settings.BEEM_RUN_IDLE_MINUTES)


def probe_value(request: HttpRequest) -> str | None:
    """The GUID of an Entra probe (``GET .../Users?filter=userName eq "<GUID>"``), else None."""
    if request.method != "GET" or not request.path.rstrip("/").endswith("/Users"):
        return None
    try:
        # The view parsed the query string already (request.GET is cached on the request).
        # Blank values are skipped, as parse_qs skips them.
        filters = [value for value in request.GET.getlist("filter") if value]
    except SuspiciousOperation:  # more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
        filters = parse_qs(request.META.get("QUERY_STRING", "")).get("filter")
    if not filters:
        return None
    match = _PROBE_FILTER.match(filters[0])
    if match is None:
        return None
    try:
        uuid.UUID(match.group(1))
    except ValueError:
        return None
    return match.group(1)


def _last_activity(run: ProvisioningRun) -> datetime:
    pending = _pending.get(run.pk)
    if pending is not None and pending[1] > run.last_activity_at:
        return pending[1]
    return run.last_activity_at


def _run_open(*, sync_settings: SyncSettings, trigger: str, now: datetime) -> ProvisioningRun:
    organization = sync_settings.organization
    # Inside a SCIM write's transaction the run commits with the write, durably: SET LOCAL
    # would apply to the whole transaction, the write included.
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            # Every Entra probe opens a run under the settings row lock. Waiting for the WAL
            # flush while holding that lock capped probes at the disk's fsync rate; a run row
            # is bookkeeping, and any later durable SCIM write flushes it anyway (WAL is
            # ordered), so an asynchronous commit loses nothing that matters.
            db.commit_without_flush_wait()
        # Serialises run opening per organization across web processes.
        SyncSettings.objects.select_for_update().filter(pk=sync_settings.pk).first()
        current = run_current(organization=organization)
        if trigger == ProvisioningRun.Trigger.ACTIVITY and current is not None:
            if now - _last_activity(current) <= _idle_gap():
                # Another process opened a run while we waited for the lock.
                return current
        if trigger == ProvisioningRun.Trigger.PROBE and _probe_coalesces(
            current,
            changed=current is not None and current.events.exists(),
            now=now,
            sync_settings=sync_settings,
        ):
            # Another process's probe opened a run moments ago (a burst of probes).
            return current
        open_runs = ProvisioningRun.objects.filter(organization=organization, ended_at__isnull=True)
        if trigger == ProvisioningRun.Trigger.PROBE:
            # The probe is the first call of a new cycle: what came before is over now.
            open_runs.update(ended_at=now)
            SyncSettings.objects.filter(pk=sync_settings.pk).update(last_test_connection_at=now)
        else:
            # An idle run ended with its last request.
            open_runs.update(ended_at=F("last_activity_at"))
        return ProvisioningRun.objects.create(organization=organization, trigger=trigger)


class WriteRun:
    """A SCIM write's run before it is known (PostgreSQL): the record services read the
    organization's open run in the statement that locks or inserts the record, and append
    their events to it; after the view, ``write_run_settle`` decides the request's run as
    ``run_for_request`` always does and moves the events when it is another one (the first
    write of a run: none was open, or it had been idle too long). Saves a round trip per
    write."""

    def __init__(self, organization_id: int):
        self.organization_id = organization_id
        self.read = False
        self.run: ProvisioningRun | None = None
        self.event_ids: list[int] = []

    def found(self, run: ProvisioningRun | None) -> None:
        self.read, self.run = True, run


def write_run_settle(
    *, sync_settings: SyncSettings, request: HttpRequest, pending: WriteRun
) -> ProvisioningRun:
    """The run of a write whose statement read the open run (``WriteRun``); counts it."""
    open_run = (pending.run, False, False) if pending.read else None
    run = run_for_request(
        sync_settings=sync_settings, request=request, open_run=open_run, in_write=True
    )
    if pending.event_ids and (pending.run is None or pending.run.pk != run.pk):
        ChangeEvent.objects.filter(pk__in=pending.event_ids).update(run=run)
    return run


def _probe_coalesces(
    run: ProvisioningRun | None, *, changed: bool, now: datetime, sync_settings: SyncSettings
) -> bool:
    """Whether a probe joins ``run`` rather than opening a new one.

    Entra sends the probe at the start of every cycle and every Test Connection; a burst of
    probes (Test Connection clicked twice, several lookups of random GUIDs at once) would
    otherwise make a run per probe, each with nothing in it. A probe joins the open run when
    that run was itself opened by a probe less than ``BEEM_PROBE_COALESCE_SECONDS`` (default
    5 s, 0 turns this off) ago and no directory change was recorded in it yet — and not
    before the sync was last (re)activated: the Test Connection after a reactivation is what
    the reactivation page waits for, so it always opens a run and records its time.
    """
    window = settings.BEEM_PROBE_COALESCE_SECONDS
    return (
        run is not None
        and window > 0
        and not changed
        and run.trigger == ProvisioningRun.Trigger.PROBE
        and timedelta(0) <= now - run.started_at < timedelta(seconds=window)
        and (sync_settings.activated_at is None or run.started_at >= sync_settings.activated_at)
    )


def run_for_request(
    *,
    sync_settings: SyncSettings,
    request: HttpRequest,
    open_run: tuple[ProvisioningRun | None, bool, bool] | None = None,
    in_write: bool = False,
) -> ProvisioningRun:
    """The run an authenticated SCIM request belongs to (opening one if needed); counts it.

    ``open_run``: ``(open run, a change was recorded in it, the request's userName lookup
    found a user)`` when the view already read them in its own statement (a GET is assigned
    its run after the view ran); otherwise one statement reads them here. ``in_write``: called
    inside a write's transaction, which must not write the batched counts.
    """
    now = timezone.now()
    probe = probe_value(request)
    # Okta has no probe: its connection test and import start with the first page of /Users.
    starts = probe is None and directories.starts_run(sync_settings=sync_settings, request=request)
    if open_run is None:
        open_run = reads.open_run_and_probe_match(
            organization_id=sync_settings.organization_id,
            probe_key=None if probe is None else probe.casefold(),
        )
    run, changed, probe_matches = open_run
    if starts or (probe is not None and not probe_matches):
        if not _probe_coalesces(run, changed=changed, now=now, sync_settings=sync_settings):
            run = _run_open(
                sync_settings=sync_settings, trigger=ProvisioningRun.Trigger.PROBE, now=now
            )
    elif run is None or now - _last_activity(run) > _idle_gap():
        run = _run_open(
            sync_settings=sync_settings, trigger=ProvisioningRun.Trigger.ACTIVITY, now=now
        )
    _count(run=run, now=now, flush=not in_write)
    return run


def count_flush_seconds() -> float:
    return settings.BEEM_RUN_COUNT_FLUSH_SECONDS


def _count(*, run: ProvisioningRun, now: datetime, flush: bool = True) -> None:
    with _pending_lock:
        entry = _pending.setdefault(run.pk, [0, now])
        entry[0] += 1
        entry[1] = max(entry[1], now)
    flusher.background_flusher_ensure()
    if flush:
        runs_counts_flush_if_due()


def last_request_note(*, sync_settings: SyncSettings) -> None:
    """Record that the organization's Entra called now (``SyncSettings.last_request_at``)."""
    now = timezone.now()
    moment = time.monotonic()
    with _pending_lock:
        written = _last_request_written.get(sync_settings.pk)
        if written is not None and moment - written < LAST_REQUEST_WRITE_SECONDS:
            _last_request_pending[sync_settings.pk] = now
            return
        _last_request_written[sync_settings.pk] = moment
        _last_request_pending.pop(sync_settings.pk, None)
    # .update(): no post_save, so this does not invalidate the SCIM auth cache.
    SyncSettings.objects.filter(pk=sync_settings.pk).update(last_request_at=now)


def runs_counts_flush_if_due() -> int:
    """``runs_counts_flush`` if something waits and BEEM_RUN_COUNT_FLUSH_SECONDS passed."""
    if not (_pending or _last_request_pending):
        return 0
    if time.monotonic() - _last_flush < count_flush_seconds():
        return 0
    return runs_counts_flush()


def runs_counts_flush() -> int:
    """Write this process's batched request counts and last-request times; returns how many
    runs were updated. Each row in its own statement, in id order."""
    global _pending, _last_request_pending, _last_flush
    with _pending_lock:
        batch, _pending = _pending, {}
        contacts, _last_request_pending = _last_request_pending, {}
        _last_flush = time.monotonic()
    for run_id, (count, last_seen) in sorted(batch.items()):
        ProvisioningRun.objects.filter(pk=run_id).update(
            requests_received=F("requests_received") + count,
            last_activity_at=Greatest(
                F("last_activity_at"), Value(last_seen, output_field=DateTimeField())
            ),
        )
    for settings_id, seen in sorted(contacts.items()):
        SyncSettings.objects.filter(pk=settings_id).update(
            # Coalesce: on SQLite GREATEST(NULL, x) is NULL.
            last_request_at=Greatest(
                Coalesce(F("last_request_at"), Value(seen, output_field=DateTimeField())),
                Value(seen, output_field=DateTimeField()),
            )
        )
    return len(batch)


def runs_pending_discard() -> None:
    """Drop unwritten counts (tests: run ids are reused after a rolled-back test; a forked
    child: its parent writes them)."""
    global _last_flush
    with _pending_lock:
        _pending.clear()
        _last_request_pending.clear()
        _last_request_written.clear()
        _last_flush = time.monotonic()


process_state.register(
    runs_pending_discard, holds=("_pending", "_last_request_pending", "_last_request_written")
)
flusher.flush_register(runs_counts_flush_if_due, interval=count_flush_seconds)


def runs_close_idle(*, now: datetime | None = None) -> int:
    """End every run idle longer than BEEM_RUN_IDLE_MINUTES (beat task); returns how many."""
    runs_counts_flush()
    now = now or timezone.now()
    return ProvisioningRun.objects.filter(
        ended_at__isnull=True, last_activity_at__lt=now - _idle_gap()
    ).update(ended_at=F("last_activity_at"))


@atexit.register
def _flush_at_exit() -> None:
    # A gunicorn worker that is recycled writes its last counts; if the database is gone
    # there is nothing useful left to do with them.
    try:
        if _pending or _last_request_pending:
            runs_counts_flush()
    except Exception:  # interpreter shutdown, best effort
        logger.debug("could not write the last provisioning run counts at exit")


# --- refused writes ----------------------------------------------------------------------

REFUSED_METHODS = frozenset({"POST", "PUT", "PATCH"})
_RESOURCE_TYPES = {
    "Users": DirectoryRecord.ResourceType.USER,
    "Groups": DirectoryRecord.ResourceType.GROUP,
}
_MAX_DETAIL_CHARS = 2000


def is_refused_write(*, method: str, status: int) -> bool:
    return method in REFUSED_METHODS and 400 <= status < 500


def _json_object(raw: bytes | str) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _text(value, limit: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return storable_text(str(value))[:limit]


def _refusal_identity(
    *, request: HttpRequest, organization_id: int, resource_type: str, scim_id: str
) -> tuple[str, str]:
    """(externalId, userName or a group's displayName) of the object a refused write was
    about: from its body (POST, PUT), else from the record its URL addressed (PATCH)."""
    try:
        body = _json_object(request.body)
    except Exception:  # an unreadable or oversized body has no identity
        body = {}
    fields = {key.lower(): value for key, value in body.items() if isinstance(key, str)}
    name_key = "displayname" if resource_type == DirectoryRecord.ResourceType.GROUP else "username"
    external_id = _text(fields.get("externalid"), 255)
    name = _text(fields.get(name_key), 255)
    if scim_id and resource_type and not (external_id and name):
        try:
            record_id = uuid.UUID(scim_id)
        except ValueError:
            record_id = None
        record = record_id and (
            DirectoryRecord.objects.filter(
                organization_id=organization_id, resource_type=resource_type, scim_id=record_id
            )
            .values_list("external_id", "user_name", "display_name")
            .first()
        )
        if record:
            stored_name = (
                record[2] if resource_type == DirectoryRecord.ResourceType.GROUP else record[1]
            )
            external_id = external_id or _text(record[0], 255)
            name = name or _text(stored_name, 255)
    return external_id, name


def _refusal_reason(response: HttpResponse) -> tuple[str, str]:
    """(scimType, detail) of a SCIM error answer."""
    body = getattr(response, "scim_body", None)
    if not isinstance(body, dict):
        body = _json_object(b"" if getattr(response, "streaming", False) else response.content)
    return _text(body.get("scimType"), 32), _text(body.get("detail"), _MAX_DETAIL_CHARS)


def refusal_record(
    *, run: ProvisioningRun, request: HttpRequest, response: HttpResponse, scim_id: str | None
) -> None:
    """Keep a write refused with a 4xx (``is_refused_write``) as a failure of ``run``.

    Runs in the refused write's transaction, which writes nothing else but the run; a row
    that cannot be written is logged and counted and the answer stands. Never raises.
    """
    from .metrics import REQUEST_LOG_FAILURES, scim_route

    try:
        route = scim_route(request.path_info) or ""
        resource_type = _RESOURCE_TYPES.get(route.split("/", 1)[0], "")
        external_id, name = _refusal_identity(
            request=request,
            organization_id=run.organization_id,
            resource_type=resource_type,
            scim_id=scim_id or "",
        )
        scim_type, detail = _refusal_reason(response)
        with transaction.atomic():
            RefusedRequest.objects.create(
                organization_id=run.organization_id,
                run=run,
                request_id=_text(getattr(request, "request_id", ""), 64),
                method=request.method,
                resource_type=resource_type,
                scim_id=_text(scim_id or "", 64),
                external_id=external_id,
                name=name,
                status=response.status_code,
                scim_type=scim_type,
                detail=detail,
            )
    except Exception:  # bookkeeping must not change Entra's answer
        REQUEST_LOG_FAILURES.labels(stage="refused_request").inc()
        logger.exception("could not record a refused SCIM write in its provisioning run")
