from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("directory_sync", "0003_directory_record_count"),
    ]

    operations = [
        # The apply job drains one organization's pending events oldest first
        # (apply.events_drain): an index range scan instead of a sort of every pending row.
        migrations.AddIndex(
            model_name="changeevent",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["organization", "id"],
                name="change_event_pending_org",
            ),
        ),
    ]
