"""Reinstall the DirectoryRecordCount triggers on SQLite, and recount.

Migration 0007 added a column to DirectoryRecord; on SQLite Django rebuilds an altered table
(new table, copy, rename), which drops its triggers (see 0003's docstring), so SCIM list
totals stopped counting writes. The counts are rebuilt from the records, since writes may
have gone uncounted meanwhile. PostgreSQL keeps its triggers through ``ADD COLUMN``: nothing
to do there.
"""

import importlib

from django.db import migrations

_0003 = importlib.import_module("directory_sync.migrations.0003_directory_record_count")


def reinstall(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    _0003.install_triggers(apps, schema_editor)
    _0003.fill(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("directory_sync", "0007_directory_record_applied_department"),
    ]

    operations = [
        migrations.RunPython(reinstall, migrations.RunPython.noop),
    ]
