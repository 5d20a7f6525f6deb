"""``redispatch`` and ``purge``: the change-event backlog and the retention of old logs."""

from django.conf import settings
from django.core.management.base import CommandError
from django.db.models import Count

from directory_sync.redispatch import change_events_redispatch, change_events_to_redispatch
from directory_sync.retention import logs_purge

from .output import TextProgress, org_argument, organization_lookup, table


def parsers_add(sub) -> None:
    p = sub.add_parser(
        "redispatch",
        help="Re-queue pending (and with --include-failed, failed) change events.",
        description="Hand change events to the Celery broker again. Without --yes, shows "
        "how many events per organization would be re-queued. Shows a progress bar on "
        "stderr when there are more events than one batch.",
    )
    org_argument(p, required=False)
    p.add_argument(
        "--include-failed",
        action="store_true",
        help="Also re-queue failed events (they are retried from scratch).",
    )
    p.add_argument(
        "--older-than",
        type=int,
        default=0,
        metavar="SECONDS",
        help="Only events last sent (or created) at least this long ago (default 0: all).",
    )
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--yes", action="store_true", help="Really re-queue.")

    p = sub.add_parser(
        "purge",
        help="Delete request logs and finished change events older than the retention.",
        description="Delete SCIM request logs and applied/skipped change events older "
        "than BEEM_REQUEST_LOG_RETENTION_DAYS (or --days), and ended runs left empty. "
        "Failed and pending events are kept. Without --yes, shows the counts only.",
    )
    p.add_argument(
        "--days",
        type=int,
        default=None,
        help=f"Retention in days (default: {settings.BEEM_REQUEST_LOG_RETENTION_DAYS}).",
    )
    p.add_argument("--yes", action="store_true", help="Really delete.")


def redispatch(
    command,
    *,
    org: str | None,
    include_failed: bool,
    older_than: int,
    batch_size: int,
    yes: bool,
    **options,
) -> None:
    organization = organization_lookup(org) if org else None
    if batch_size < 1:
        raise CommandError("--batch-size must be at least 1.")
    events = change_events_to_redispatch(
        organization=organization, include_failed=include_failed, older_than_seconds=older_than
    )
    counts = list(
        events.values("organization__slug", "organization_id", "status")
        .annotate(n=Count("id"))
        .order_by("organization_id", "status")
    )
    what = "pending and failed" if include_failed else "pending"
    if not counts:
        command.stdout.write(f"No {what} change events to re-queue.")
        return
    rows = [
        [f"{c['organization__slug']} ({c['organization_id']})", c["status"], str(c["n"])]
        for c in counts
    ]
    command.stdout.write(table(["ORGANIZATION", "STATUS", "EVENTS"], rows), ending="")
    total = sum(c["n"] for c in counts)
    if not yes:
        command.stdout.write(
            f"Would re-queue {total} {what} change event(s).\n"
            "Nothing was changed. Re-run with --yes to re-queue."
        )
        return
    progress = TextProgress(command.stderr, "Re-queueing") if total > batch_size else None
    result = change_events_redispatch(
        organization=organization,
        include_failed=include_failed,
        older_than_seconds=older_than,
        dry_run=False,
        batch_size=batch_size,
        progress=progress,
    )
    if progress is not None:
        progress.close()
    command.stdout.write(f"Re-queued {result.dispatched} change event(s).")
    if result.broker_unavailable:
        raise CommandError(
            f"The broker refused after {result.dispatched} event(s); the other "
            f"{result.total - result.dispatched} stay pending. Check the broker "
            "(GET /healthz) and run this again."
        )


def purge(command, *, days: int | None, yes: bool, **options) -> None:
    if days is not None and days < 0:
        raise CommandError("--days cannot be negative.")
    counts = logs_purge(retention_days=days, dry_run=not yes)
    verb = "Deleted" if yes else "Would delete"
    command.stdout.write(
        f"{verb}, older than {counts.cutoff.isoformat()}:\n"
        f"  request logs:            {counts.request_logs}\n"
        f"  finished change events:  {counts.change_events}\n"
        f"  ended provisioning runs: {counts.runs}"
    )
    if not yes:
        command.stdout.write("Nothing was changed. Re-run with --yes to delete.")


HANDLERS = {"redispatch": redispatch, "purge": purge}
