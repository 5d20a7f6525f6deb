"""Indexes for the members-list search on PostgreSQL (members.selectors._member_search_q).

Search is "name contains", "email starts with", "phone starts with" or "employee number is";
without these, every search scanned all of an organization's members (0.7 s at 100,000).
Trigram GIN indexes serve LIKE '%x%' and 'x%'; pg_trgm is a trusted extension, so the
database owner may create it. SQLite (the embedded default) needs nothing: this is a no-op.
The indexes are built CONCURRENTLY so migrating a large live table does not block writes.
"""

from django.db import migrations

INDEXES = {
    "member_search_name_trgm": (
        "ON members_member USING gin (UPPER(display_name::text) gin_trgm_ops)"
    ),
    "member_search_email_trgm": "ON members_member USING gin (email gin_trgm_ops)",
    "member_search_phone_trgm": "ON members_member USING gin (phone gin_trgm_ops)",
    "member_search_employee": "ON members_member (organization_id, employee_number)",
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("members", "0001_initial")]

    operations = [migrations.RunPython(create_indexes, drop_indexes, elidable=False)]
