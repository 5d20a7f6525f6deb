"""``manage.py directory_sync``: one module per group of subcommands, each adding its parsers
(``parsers_add``) and naming its handlers (``HANDLERS``); the command in
``management/commands/directory_sync.py`` only puts them together.

Modules: ``status``; ``connection`` (credentials, activate, stop); ``setup`` (configure, and
the "Set up in Beem" options activate shares); ``events`` (redispatch, purge); ``reconcile``;
``output`` (the organization argument, tables, the progress bar).

Handlers parse nothing themselves and call the same services as the admin UI; every write is
audited as done by :data:`OPERATOR`. Destructive actions print what they would do and change
nothing unless given ``--yes``.
"""

# The audit entries' actor label of every change made from the command line.
OPERATOR = "operator"
