# RefusedRequest: writes refused with a 4xx, counted as failures of their provisioning run.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("directory_sync", "0004_change_event_pending_org"),
        ("members", "0002_member_search_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="RefusedRequest",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("request_id", models.CharField(blank=True, max_length=64)),
                ("method", models.CharField(max_length=10)),
                ("resource_type", models.CharField(blank=True, max_length=5)),
                ("scim_id", models.CharField(blank=True, max_length=64)),
                ("external_id", models.CharField(blank=True, max_length=255)),
                ("name", models.CharField(blank=True, max_length=255)),
                ("status", models.PositiveSmallIntegerField()),
                ("scim_type", models.CharField(blank=True, max_length=32)),
                ("detail", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="refused_requests",
                        to="members.organization",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="refused_requests",
                        to="directory_sync.provisioningrun",
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "id"],
            },
        ),
    ]
