"""``manage.py directory_sync <subcommand>``: the operator's command set for Entra ID sync.

Subcommands: status, credentials, activate, stop, redispatch, reconcile, purge (``--help`` on
each). They call the same services as the admin UI, audited as done by "operator".
Destructive actions print what they would do and change nothing unless given ``--yes``.
"""

import csv
import io
import json
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from beem_admin.logging import request_id_new, request_id_var
from directory_sync import maintenance
from directory_sync import services as sync_services
from directory_sync.dispatch import change_events_redispatch, change_events_to_redispatch
from directory_sync.maintenance import OPERATOR
from directory_sync.models import SyncSettings
from members.models import Organization

RECONCILE_COLUMNS = [
    "organization_id",
    "organization_slug",
    "kind",
    "resource_type",
    "scim_id",
    "label",
    "member_id",
    "group_id",
    "pending_event",
    "detail",
]


def organization_lookup(value: str) -> Organization:
    """An organization by id or slug, or a CommandError naming what was tried."""
    value = (value or "").strip()
    by_id = Organization.objects.filter(pk=int(value)).first() if value.isdigit() else None
    by_slug = Organization.objects.filter(slug=value).first()
    if by_id is not None and by_slug is not None and by_id.pk != by_slug.pk:
        # One organization's id is another's slug: acting on a guess could touch the wrong
        # tenant (found by tests/hardening/test_isolation_commands.py).
        raise CommandError(
            f"--org {value!r} is ambiguous: it is the id of {by_id.slug!r} and the slug of "
            f"organization {by_slug.pk}. Use the other organization's slug or id instead."
        )
    organization = by_id or by_slug
    if organization is None:
        raise CommandError(
            f"Unknown organization {value!r}: no organization has that id or slug. "
            "Run `manage.py directory_sync status` to list them."
        )
    return organization


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


class TextProgress:
    """A one-line text progress bar on stderr (redrawn with carriage returns)."""

    WIDTH = 30

    def __init__(self, stream, label: str):
        self.stream = stream
        self.label = label
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        filled = int(self.WIDTH * min(done, total) / total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}", ending="")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("")


class Command(BaseCommand):
    help = (
        "Operate Entra ID directory sync. Subcommands: status, credentials, activate, stop, "
        "redispatch, reconcile, purge. Run `directory_sync <subcommand> --help` for each."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        def org_argument(p, required: bool) -> None:
            p.add_argument(
                "--org",
                required=required,
                metavar="ID_OR_SLUG",
                help="The organization, by numeric id or slug."
                + ("" if required else " Default: every organization."),
            )

        p = sub.add_parser(
            "status",
            help="Sync status, last contact, current run (failures include refused writes) and "
            "event backlog per organization.",
            description="Show every organization's sync status, last Test Connection, last "
            "SCIM request, the current provisioning run's progress (its events by status; "
            "failed includes the writes Beem refused with a 4xx, listed below the table with "
            "their reason and the Entra object), pending and failed change events and the age "
            "of the oldest pending one.",
        )
        org_argument(p, required=False)
        p.add_argument("--format", choices=["table", "json"], default="table")

        p = sub.add_parser(
            "credentials",
            help="Create an organization's Entra ID credentials, or issue a new client secret.",
            description="Print the Tenant URL, Token Endpoint, Client Identifier and (only "
            "when created or replaced) Client Secret to paste into Entra ID. Creates the "
            "credentials when there are none. With existing credentials, --yes issues a new "
            "Client Secret: the Tenant URL, Token Endpoint and Client Identifier do not change; "
            "the old secret and every token obtained with it stop working at once, so paste the "
            "new secret into Entra ID's Client Secret field.",
        )
        org_argument(p, required=True)
        p.add_argument(
            "--base-url",
            help="Public base URL for the printed URLs (e.g. https://beem.example.com) when "
            "BEEM_PUBLIC_URL is not set.",
        )
        p.add_argument(
            "--yes",
            action="store_true",
            help="Issue a new Client Secret (the Client Identifier stays).",
        )

        p = sub.add_parser(
            "activate",
            help="Activate (or reactivate) sync, like the UI's Save and Activate.",
            description="Activate an organization's sync. Issues credentials first when it has "
            "none (and prints them once). Audited as done by 'operator'.",
        )
        org_argument(p, required=True)
        p.add_argument("--base-url", help="Public base URL for printed URLs (see credentials).")

        p = sub.add_parser(
            "stop",
            help="Stop sync: every SCIM call answers 401 (needs --yes).",
            description="Stop an organization's sync, like the UI's Stop button. Entra ID then "
            "gets 401 on every call and quarantines the provisioning job. Needs --yes.",
        )
        org_argument(p, required=True)
        p.add_argument("--yes", action="store_true", help="Really stop.")

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
            "reconcile",
            help="Compare directory records with members; report or re-queue differences.",
            description="Compare every directory record with its member (or group) and list "
            "the differences: missing_member/missing_group, stale_field, duplicate, orphan, "
            "record_count. --fix --yes re-queues the records of missing and stale entries (one "
            "change event each) and rebuilds wrong SCIM list counts; duplicates and orphans "
            "need a person's decision.",
        )
        org_argument(p, required=False)
        p.add_argument("--format", choices=["table", "csv", "json"], default="table")
        p.add_argument("--output", metavar="FILE", help="Write the report to FILE.")
        p.add_argument("--fix", action="store_true", help="Re-queue fixable records.")
        p.add_argument("--yes", action="store_true", help="Confirm --fix.")

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

    def handle(self, *args, subcommand: str, **options) -> None:
        # One id for the command's log lines and the jobs it queues (carried to the worker).
        token = request_id_var.set(f"cmd-{request_id_new()[:16]}")
        try:
            getattr(self, f"handle_{subcommand}")(**options)
        finally:
            request_id_var.reset(token)

    # --- status -----------------------------------------------------------------------

    def handle_status(self, *, org: str | None, format: str, **options) -> None:
        organizations = (
            [organization_lookup(org)] if org else list(Organization.objects.order_by("id"))
        )
        rows = maintenance.sync_status_overview(organizations=organizations)
        if format == "json":
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No organizations.")
            return
        table = []
        for row in rows:
            run = row["current_run"]
            # A write Beem refused (4xx) is a failure of the run, like an event that failed.
            run_text = (
                "-"
                if run is None
                else f"#{run['id']} {run['events']['pending']} pending/"
                f"{run['events']['applied']} applied/"
                f"{run['events']['failed'] + run['refused']} failed"
                + (f" ({run['refused']} refused)" if run["refused"] else "")
            )
            table.append(
                [
                    f"{row['organization']['slug']} ({row['organization']['id']})",
                    row["status"],
                    row["last_test_connection_at"] or "never",
                    row["last_request_at"] or "never",
                    run_text,
                    str(row["pending_events"]),
                    str(row["failed_events"]),
                    _age(row["oldest_pending_age_seconds"]),
                ]
            )
        self.stdout.write(
            _table(
                [
                    "ORGANIZATION",
                    "STATUS",
                    "LAST TEST CONNECTION",
                    "LAST REQUEST",
                    "CURRENT RUN",
                    "PENDING",
                    "FAILED",
                    "OLDEST PENDING",
                ],
                table,
            ),
            ending="",
        )
        for row in rows:
            run = row["current_run"]
            if not run or not run["refused"]:
                continue
            self.stdout.write(
                f"\nRefused in run #{run['id']} of {row['organization']['slug']} "
                f"({run['refused']}, latest first):"
            )
            for refusal in run["refused_latest"]:
                who = refusal["name"] or "-"
                if refusal["external_id"]:
                    who += f" (externalId {refusal['external_id']})"
                reason = f"{refusal['scim_type']}: " if refusal["scim_type"] else ""
                self.stdout.write(
                    f"  {refusal['at']}  {refusal['method']} {refusal['resource_type'] or '-'} "
                    f"{who}  {refusal['status']} {reason}{refusal['detail']}"
                )

    # --- credentials, activate, stop --------------------------------------------------------

    def _urls(self, organization: Organization, base_url: str | None) -> tuple[str, str]:
        tenant = sync_services.tenant_url(organization=organization)
        token = sync_services.token_endpoint_url()
        if base_url:
            base = base_url.rstrip("/")
            if not urlsplit(base).scheme or not urlsplit(base).netloc:
                raise CommandError(f"--base-url {base_url!r} must look like https://host[:port].")
            tenant = base + urlsplit(tenant).path
            token = base + urlsplit(token).path
        elif not settings.BEEM_PUBLIC_URL:
            self.stderr.write(
                "Note: BEEM_PUBLIC_URL is not set; the URLs below use a local address. "
                "Pass --base-url https://<public host> to print the ones Entra ID must use."
            )
        return tenant, token

    def _print_connection(
        self, organization: Organization, base_url: str | None, issued=None
    ) -> None:
        tenant, token = self._urls(organization, base_url)
        sync = sync_services.sync_settings_get(organization=organization)
        client_id = issued.client_id if issued else getattr(sync.oauth_application, "client_id", "")
        self.stdout.write(f"Tenant URL:        {tenant}")
        self.stdout.write(f"Token Endpoint:    {token}")
        self.stdout.write(f"Client Identifier: {client_id or '(none yet)'}")
        if issued is not None:
            self.stdout.write(f"Client Secret:     {issued.client_secret}")
            self.stdout.write(
                "The client secret is shown only now (only a keyed hash is stored): copy it into "
                "Entra ID's provisioning Admin Credentials."
            )

    def handle_credentials(self, *, org: str, base_url: str | None, yes: bool, **options) -> None:
        organization = organization_lookup(org)
        sync = sync_services.sync_settings_get(organization=organization)
        if sync.oauth_application_id is not None and not yes:
            self._print_connection(organization, base_url)
            created = sync.credentials_created_at
            self.stdout.write(
                f"\n{organization.name} already has credentials (created "
                f"{created.isoformat() if created else 'earlier'})."
                "\nWould issue a new Client Secret (the Client Identifier stays the same); the old "
                "secret and every token obtained with it stop working at once, so Entra ID fails "
                "until the new secret is pasted there.\nNothing was changed. Re-run with --yes "
                "to issue a new secret."
            )
            return
        issued = sync_services.credentials_issue(organization=organization, actor_label=OPERATOR)
        if issued.rotated:
            self.stdout.write(
                f"Issued a new Client Secret for {organization.name} (id {organization.pk}, slug "
                f"{organization.slug}). Unchanged: Tenant URL, Token Endpoint, Client Identifier. "
                "In Entra ID replace only the Client Secret, then Test Connection.\n"
            )
        else:
            self.stdout.write(
                f"Created Entra ID credentials for {organization.name} (id {organization.pk}, "
                f"slug {organization.slug}).\n"
            )
        self._print_connection(organization, base_url, issued=issued)

    def handle_activate(self, *, org: str, base_url: str | None, **options) -> None:
        organization = organization_lookup(org)
        before = sync_services.sync_settings_get(organization=organization).status
        try:
            issued = sync_services.sync_activate(organization=organization, actor_label=OPERATOR)
        except sync_services.SyncSettingsError as exc:
            raise CommandError(str(exc))
        if before == SyncSettings.Status.ACTIVE:
            self.stdout.write(f"Sync of {organization.name} is already active; nothing changed.")
        else:
            self.stdout.write(f"Activated sync of {organization.name} (was {before}).")
        if issued is not None:
            self.stdout.write("Credentials were issued for the first time:\n")
            self._print_connection(organization, base_url, issued=issued)

    def handle_stop(self, *, org: str, yes: bool, **options) -> None:
        organization = organization_lookup(org)
        sync = sync_services.sync_settings_get(organization=organization)
        if sync.status != SyncSettings.Status.ACTIVE:
            self.stdout.write(
                f"Sync of {organization.name} is not active ({sync.status}); nothing to stop."
            )
            return
        if not yes:
            self.stdout.write(
                f"Would stop sync of {organization.name}: every SCIM call will answer 401 and "
                "Entra ID will quarantine the provisioning job until sync is reactivated.\n"
                "Nothing was changed. Re-run with --yes to stop."
            )
            return
        sync_services.sync_stop(organization=organization, actor_label=OPERATOR)
        self.stdout.write(f"Stopped sync of {organization.name}.")

    # --- redispatch ---------------------------------------------------------------------

    def handle_redispatch(
        self,
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
            self.stdout.write(f"No {what} change events to re-queue.")
            return
        table = [
            [f"{c['organization__slug']} ({c['organization_id']})", c["status"], str(c["n"])]
            for c in counts
        ]
        self.stdout.write(_table(["ORGANIZATION", "STATUS", "EVENTS"], table), ending="")
        total = sum(c["n"] for c in counts)
        if not yes:
            self.stdout.write(
                f"Would re-queue {total} {what} change event(s).\n"
                "Nothing was changed. Re-run with --yes to re-queue."
            )
            return
        progress = None
        if total > batch_size:
            progress = TextProgress(self.stderr, "Re-queueing")
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
        self.stdout.write(f"Re-queued {result.dispatched} change event(s).")
        if result.broker_unavailable:
            raise CommandError(
                f"The broker refused after {result.dispatched} event(s); the other "
                f"{result.total - result.dispatched} stay pending. Check the broker "
                "(GET /healthz) and run this again."
            )

    # --- reconcile ----------------------------------------------------------------------

    def handle_reconcile(
        self,
        *,
        org: str | None,
        format: str,
        output: str | None,
        fix: bool,
        yes: bool,
        **options,
    ) -> None:
        organization = organization_lookup(org) if org else None
        differences = maintenance.reconcile_differences(organization=organization)
        report = _render_differences(differences, format)
        if output:
            with open(output, "w", encoding="utf-8", newline="") as handle:
                handle.write(report)
            self.stdout.write(f"Wrote {len(differences)} difference(s) to {output}.")
        else:
            self.stdout.write(report, ending="")
        # The summary goes to stderr when stdout carries a machine-readable report.
        notes = self.stderr if (format != "table" and not output) else self.stdout
        fixable = {
            d.record_id
            for d in differences
            if d.kind in maintenance.FIXABLE and d.record_id and not d.pending_event
        }
        counts = sum(d.kind == maintenance.Kind.RECORD_COUNT for d in differences)
        if not fix:
            if fixable:
                notes.write(f"{len(fixable)} record(s) can be re-queued with --fix --yes.")
            if counts:
                notes.write(f"{counts} list count(s) can be rebuilt with --fix --yes.")
            return
        if not yes:
            if counts:
                notes.write(f"Would rebuild {counts} list count(s).\n")
            notes.write(
                f"Would re-queue {len(fixable)} record(s) (one change event each).\n"
                "Nothing was changed. Re-run with --fix --yes to re-queue."
            )
            return
        if counts:
            rebuilt = maintenance.record_counts_fix(differences=differences)
            notes.write(f"Rebuilt {rebuilt} list count(s).\n")
        requeued = maintenance.reconcile_fix(differences=differences, actor_label=OPERATOR)
        notes.write(f"Re-queued {requeued} record(s).")

    # --- purge --------------------------------------------------------------------------

    def handle_purge(self, *, days: int | None, yes: bool, **options) -> None:
        if days is not None and days < 0:
            raise CommandError("--days cannot be negative.")
        counts = maintenance.logs_purge(retention_days=days, dry_run=not yes)
        verb = "Deleted" if yes else "Would delete"
        self.stdout.write(
            f"{verb}, older than {counts.cutoff.isoformat()}:\n"
            f"  request logs:            {counts.request_logs}\n"
            f"  finished change events:  {counts.change_events}\n"
            f"  ended provisioning runs: {counts.runs}"
        )
        if not yes:
            self.stdout.write("Nothing was changed. Re-run with --yes to delete.")


def _render_differences(differences: list, format: str) -> str:
    rows = [d.as_dict() for d in differences]
    if format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RECONCILE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    if not rows:
        return "No differences: every directory record matches its member or group.\n"
    table = [
        [
            f"{r['organization_slug']} ({r['organization_id']})",
            r["kind"],
            r["resource_type"],
            r["scim_id"] or "-",
            r["label"],
            str(r["member_id"] or r["group_id"] or "-"),
            r["detail"] + (" (change pending)" if r["pending_event"] else ""),
        ]
        for r in rows
    ]
    summary = {}
    for r in rows:
        summary[r["kind"]] = summary.get(r["kind"], 0) + 1
    return (
        _table(["ORGANIZATION", "KIND", "TYPE", "SCIM ID", "LABEL", "BEEM ID", "DETAIL"], table)
        + "\n"
        + ", ".join(f"{n} {kind}" for kind, n in sorted(summary.items()))
        + "\n"
    )
