"""``status``: every organization's sync at a glance, its Set up in Beem choices, and the
writes Beem refused in its current run."""

import json

from directory_sync.status_overview import sync_status_overview

from .output import age, org_argument, organizations_lookup, table

# The settings table's columns: (setting, header).
SETTINGS_COLUMNS = [
    ("identify_by", "IDENTIFY BY"),
    ("deletion_rule", "DELETION RULE"),
    ("department_format", "DEPARTMENT FORMAT"),
    ("department_delimiter", "DELIMITER"),
    ("duplicate_department_policy", "SAME-NAME DEPARTMENTS"),
    ("default_phone_country", "PHONE COUNTRY"),
]


def parsers_add(sub) -> None:
    p = sub.add_parser(
        "status",
        help="Sync status, Set up in Beem choices, last contact, current run (failures "
        "include refused writes) and event backlog per organization.",
        description="Show every organization's sync status, last Test Connection, last "
        "SCIM request, the current provisioning run's progress (its events by status; "
        "failed includes the writes Beem refused with a 4xx, listed below the tables with "
        "their reason and the Entra object), pending and failed change events and the age "
        "of the oldest pending one; then each organization's Set up in Beem choices (change "
        "them with configure).",
    )
    org_argument(p, required=False)
    p.add_argument("--format", choices=["table", "json"], default="table")


def _run_text(run: dict | None) -> str:
    if run is None:
        return "-"
    # A write Beem refused (4xx) is a failure of the run, like an event that failed.
    return (
        f"#{run['id']} {run['events']['pending']} pending/"
        f"{run['events']['applied']} applied/"
        f"{run['events']['failed'] + run['refused']} failed"
        + (f" ({run['refused']} refused)" if run["refused"] else "")
    )


def status(command, *, org: str | None, format: str, **options) -> None:
    rows = sync_status_overview(organizations=organizations_lookup(org))
    if format == "json":
        command.stdout.write(json.dumps(rows, indent=2))
        return
    if not rows:
        command.stdout.write("No organizations.")
        return
    name = {
        row["organization"]["id"]: f"{row['organization']['slug']} ({row['organization']['id']})"
        for row in rows
    }
    overview = [
        [
            name[row["organization"]["id"]],
            row["directory"],
            row["status"],
            row["last_test_connection_at"] or "never",
            row["last_request_at"] or "never",
            _run_text(row["current_run"]),
            str(row["pending_events"]),
            str(row["failed_events"]),
            age(row["oldest_pending_age_seconds"]),
        ]
        for row in rows
    ]
    headers = [
        "ORGANIZATION",
        "DIRECTORY",
        "STATUS",
        "LAST TEST CONNECTION",
        "LAST REQUEST",
        "CURRENT RUN",
    ]
    headers += ["PENDING", "FAILED", "OLDEST PENDING"]
    command.stdout.write(table(headers, overview), ending="")
    choices = [
        [name[row["organization"]["id"]]]
        + [row["settings"][setting] or "-" for setting, _header in SETTINGS_COLUMNS]
        for row in rows
    ]
    command.stdout.write("\nSet up in Beem (change with `directory_sync configure`):")
    command.stdout.write(
        table(["ORGANIZATION"] + [header for _setting, header in SETTINGS_COLUMNS], choices),
        ending="",
    )
    for row in rows:
        run = row["current_run"]
        if not run or not run["refused"]:
            continue
        command.stdout.write(
            f"\nRefused in run #{run['id']} of {row['organization']['slug']} "
            f"({run['refused']}, latest first):"
        )
        for refusal in run["refused_latest"]:
            who = refusal["name"] or "-"
            if refusal["external_id"]:
                who += f" (externalId {refusal['external_id']})"
            reason = f"{refusal['scim_type']}: " if refusal["scim_type"] else ""
            command.stdout.write(
                f"  {refusal['at']}  {refusal['method']} {refusal['resource_type'] or '-'} "
                f"{who}  {refusal['status']} {reason}{refusal['detail']}"
            )


HANDLERS = {"status": status}
