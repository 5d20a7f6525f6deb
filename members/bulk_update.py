"""One UPDATE for many rows of one model: the writer behind the sync's batches."""

from collections.abc import Sequence

from django.db import connection


def bulk_update_rows(*, model, objs: Sequence, fields: Sequence[str]) -> int:
    """Write ``fields`` of ``objs`` (saved rows of ``model``) in one statement.

    ``bulk_update`` builds a CASE WHEN per row and field, which costs more Python than the
    whole rest of a sync batch; on PostgreSQL this is one ``UPDATE ... FROM unnest(...)``.
    No signals, no ``auto_now`` (list the field to write it).
    """
    if not objs:
        return 0
    if connection.vendor != "postgresql":
        return model.objects.bulk_update(objs, fields)
    meta = model._meta
    quote = connection.ops.quote_name
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    arrays = [[obj.pk for obj in objs]] + [
        [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs] for f in columns
    ]
    types = [pk.rel_db_type(connection)] + [f.db_type(connection) for f in columns]
    names = [quote(pk.column)] + [quote(f.column) for f in columns]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    unnest = ", ".join(f"%s::{db_type}[]" for db_type in types)
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "  # names from models
        f"FROM unnest({unnest}) AS v({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        return cursor.rowcount
