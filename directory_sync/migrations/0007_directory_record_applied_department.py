from django.db import migrations, models

ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CHUNK = 2000


def backfill(apps, schema_editor):
    """Users applied at their current version were applied with the department value their
    document holds now: a title-only change after the upgrade keeps their department."""
    from django.db.models import F

    DirectoryRecord = apps.get_model("directory_sync", "DirectoryRecord")
    alias = schema_editor.connection.alias
    rows = (
        DirectoryRecord.objects.using(alias)
        .filter(resource_type="User", applied_version__gte=F("version"))
        .only("id", "document")
        .order_by("id")
    )
    batch = []
    for record in rows.iterator(chunk_size=CHUNK):
        enterprise = (record.document or {}).get(ENTERPRISE_SCHEMA)
        value = enterprise.get("department") if isinstance(enterprise, dict) else None
        record.applied_department = str(value or "").strip()
        if record.applied_department:
            batch.append(record)
        if len(batch) >= CHUNK:
            DirectoryRecord.objects.using(alias).bulk_update(batch, ["applied_department"])
            batch = []
    if batch:
        DirectoryRecord.objects.using(alias).bulk_update(batch, ["applied_department"])


class Migration(migrations.Migration):
    dependencies = [
        ("directory_sync", "0006_change_event_failed_org"),
    ]

    operations = [
        migrations.AddField(
            model_name="directoryrecord",
            name="applied_department",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
