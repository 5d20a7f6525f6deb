"""``reconcile``: the differences between directory records and Beem, as a table, CSV or JSON,
and re-queueing what a change event can repair."""

import csv
import io
import json

from directory_sync import reconcile as reconciling

from . import OPERATOR
from .output import org_argument, organization_lookup, table

COLUMNS = [
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


def parsers_add(sub) -> None:
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


def reconcile(
    command,
    *,
    org: str | None,
    format: str,
    output: str | None,
    fix: bool,
    yes: bool,
    **options,
) -> None:
    organization = organization_lookup(org) if org else None
    differences = reconciling.reconcile_differences(organization=organization)
    report = _render(differences, format)
    if output:
        with open(output, "w", encoding="utf-8", newline="") as handle:
            handle.write(report)
        command.stdout.write(f"Wrote {len(differences)} difference(s) to {output}.")
    else:
        command.stdout.write(report, ending="")
    # The summary goes to stderr when stdout carries a machine-readable report.
    notes = command.stderr if (format != "table" and not output) else command.stdout
    fixable = {
        d.record_id
        for d in differences
        if d.kind in reconciling.FIXABLE and d.record_id and not d.pending_event
    }
    counts = sum(d.kind == reconciling.Kind.RECORD_COUNT for d in differences)
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
        rebuilt = reconciling.record_counts_fix(differences=differences)
        notes.write(f"Rebuilt {rebuilt} list count(s).\n")
    requeued = reconciling.reconcile_fix(differences=differences, actor_label=OPERATOR)
    notes.write(f"Re-queued {requeued} record(s).")


def _render(differences: list, format: str) -> str:
    rows = [d.as_dict() for d in differences]
    if format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    if not rows:
        return "No differences: every directory record matches its member or group.\n"
    lines = [
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
    summary: dict[str, int] = {}
    for r in rows:
        summary[r["kind"]] = summary.get(r["kind"], 0) + 1
    return (
        table(["ORGANIZATION", "KIND", "TYPE", "SCIM ID", "LABEL", "BEEM ID", "DETAIL"], lines)
        + "\n"
        + ", ".join(f"{n} {kind}" for kind, n in sorted(summary.items()))
        + "\n"
    )


HANDLERS = {"reconcile": reconcile}
