"""DirectoryRecordCount and the triggers that keep it exact (see the model's docstring).

The triggers append ``+1``/``-1`` rows for every insert, delete and liveness change
(``deleted_at`` set or cleared, or a record moved to another organization, resource type or
id) of ``directory_sync_directoryrecord``, in the writer's transaction. Block size 1024 is
``models.RECORD_COUNT_BLOCK``. The SQL is frozen here on purpose: on SQLite, Django rebuilds
a table it alters (new table, copy, rename), which drops its triggers, so a later migration
that alters DirectoryRecord must run ``install_triggers`` again
(tests/directory_sync/scim/test_paging.py checks the triggers exist).
"""

from django.db import migrations, models

RECORDS = "directory_sync_directoryrecord"
COUNTS = "directory_sync_directoryrecordcount"
BLOCK = 1024

POSTGRESQL = [
    f"""
    CREATE OR REPLACE FUNCTION directory_record_count() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            IF OLD.deleted_at IS NULL THEN
                INSERT INTO {COUNTS} (organization_id, resource_type, block, live)
                VALUES (OLD.organization_id, OLD.resource_type, OLD.id / {BLOCK}, -1);
            END IF;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            IF NEW.deleted_at IS NULL THEN
                INSERT INTO {COUNTS} (organization_id, resource_type, block, live)
                VALUES (NEW.organization_id, NEW.resource_type, NEW.id / {BLOCK}, 1);
            END IF;
        END IF;
        RETURN NULL;
    END
    $$""",
    f"DROP TRIGGER IF EXISTS directory_record_count_insert_delete ON {RECORDS}",
    f"""
    CREATE TRIGGER directory_record_count_insert_delete
    AFTER INSERT OR DELETE ON {RECORDS}
    FOR EACH ROW EXECUTE FUNCTION directory_record_count()""",
    f"DROP TRIGGER IF EXISTS directory_record_count_update ON {RECORDS}",
    # The WHEN clause is evaluated without calling the function: ordinary PATCHes cost nothing.
    f"""
    CREATE TRIGGER directory_record_count_update
    AFTER UPDATE OF deleted_at, organization_id, resource_type, id ON {RECORDS}
    FOR EACH ROW WHEN (
        (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
        OR OLD.organization_id <> NEW.organization_id
        OR OLD.resource_type <> NEW.resource_type
        OR OLD.id <> NEW.id
    ) EXECUTE FUNCTION directory_record_count()""",
]

_SQLITE_ROW = "(organization_id, resource_type, block, live)"
SQLITE = [
    "DROP TRIGGER IF EXISTS directory_record_count_insert",
    f"""
    CREATE TRIGGER directory_record_count_insert AFTER INSERT ON {RECORDS}
    WHEN NEW.deleted_at IS NULL BEGIN
        INSERT INTO {COUNTS} {_SQLITE_ROW}
        VALUES (NEW.organization_id, NEW.resource_type, NEW.id / {BLOCK}, 1);
    END""",
    "DROP TRIGGER IF EXISTS directory_record_count_delete",
    f"""
    CREATE TRIGGER directory_record_count_delete AFTER DELETE ON {RECORDS}
    WHEN OLD.deleted_at IS NULL BEGIN
        INSERT INTO {COUNTS} {_SQLITE_ROW}
        VALUES (OLD.organization_id, OLD.resource_type, OLD.id / {BLOCK}, -1);
    END""",
    "DROP TRIGGER IF EXISTS directory_record_count_update",
    f"""
    CREATE TRIGGER directory_record_count_update
    AFTER UPDATE OF deleted_at, organization_id, resource_type, id ON {RECORDS}
    WHEN (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
        OR OLD.organization_id <> NEW.organization_id
        OR OLD.resource_type <> NEW.resource_type
        OR OLD.id <> NEW.id
    BEGIN
        INSERT INTO {COUNTS} {_SQLITE_ROW}
        SELECT OLD.organization_id, OLD.resource_type, OLD.id / {BLOCK}, -1
        WHERE OLD.deleted_at IS NULL;
        INSERT INTO {COUNTS} {_SQLITE_ROW}
        SELECT NEW.organization_id, NEW.resource_type, NEW.id / {BLOCK}, 1
        WHERE NEW.deleted_at IS NULL;
    END""",
]

# The records that exist already (the trigger is in place first: a writer waits for this
# transaction on PostgreSQL, whose CREATE TRIGGER locks out concurrent writes).
FILL = f"""
    INSERT INTO {COUNTS} (organization_id, resource_type, block, live)
    SELECT organization_id, resource_type, id / {BLOCK}, COUNT(*)
    FROM {RECORDS} WHERE deleted_at IS NULL
    GROUP BY organization_id, resource_type, id / {BLOCK}"""


def install_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in ("postgresql", "sqlite"):
        raise RuntimeError(f"directory record count triggers are not written for {vendor}")
    for statement in POSTGRESQL if vendor == "postgresql" else SQLITE:
        schema_editor.execute(statement)


def fill(apps, schema_editor):
    schema_editor.execute(f"DELETE FROM {COUNTS}")
    schema_editor.execute(FILL)


def remove_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS directory_record_count_update ON {RECORDS}")
        schema_editor.execute(
            f"DROP TRIGGER IF EXISTS directory_record_count_insert_delete ON {RECORDS}"
        )
        schema_editor.execute("DROP FUNCTION IF EXISTS directory_record_count()")
    else:
        for name in ("insert", "delete", "update"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS directory_record_count_{name}")


class Migration(migrations.Migration):
    dependencies = [
        ("directory_sync", "0002_provisioning_run_open_index"),
        ("members", "0002_member_search_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="DirectoryRecordCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "resource_type",
                    models.CharField(
                        choices=[("User", "User"), ("Group", "Group")], max_length=5
                    ),
                ),
                ("block", models.BigIntegerField()),
                ("live", models.IntegerField()),
                (
                    "organization",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="members.organization",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["organization", "resource_type", "block"],
                        name="dirrec_count_block",
                    )
                ],
            },
        ),
        migrations.RunPython(install_triggers, remove_triggers),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
