"""``manage.py directory_sync <subcommand>``: the operator's command set for Entra ID sync.

Subcommands: status, configure, credentials, activate, stop, redispatch, reconcile, purge
(``--help`` on each); each lives in ``directory_sync/operator/``. They call the same services
as the admin UI, audited as done by "operator". Destructive actions print what they would do
and change nothing unless given ``--yes``.
"""

from django.core.management.base import BaseCommand, CommandParser

from beem_admin.logging import request_id_new, request_id_var
from directory_sync.operator import connection, events, reconcile, setup, status

# In the order ``--help`` lists them.
GROUPS = (status, setup, connection, events, reconcile)


class Command(BaseCommand):
    help = (
        "Operate directory sync (Entra ID or Okta). Subcommands: status, configure, credentials, "
        "activate, stop, redispatch, reconcile, purge. Run `directory_sync <subcommand> "
        "--help` for each."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for group in GROUPS:
            group.parsers_add(sub)

    def handle(self, *args, subcommand: str, **options) -> None:
        handler = next(g.HANDLERS[subcommand] for g in GROUPS if subcommand in g.HANDLERS)
        # One id for the command's log lines and the jobs it queues (carried to the worker).
        token = request_id_var.set(f"cmd-{request_id_new()[:16]}")
        try:
            handler(self, **options)
        finally:
            request_id_var.reset(token)
