"""The directory record statements: row locks of the sync engine."""

from django.db import connection

from ..models import DirectoryRecord
from .db import has_row_locks

_RECORDS = DirectoryRecord._meta.db_table


def records_lock_for_share(record_ids: list[int]) -> None:
    """``FOR SHARE`` on these records, in id order (the engine's lock order); no-op on SQLite."""
    if not record_ids or not has_row_locks():
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {_RECORDS} WHERE id = ANY(%s) ORDER BY id FOR SHARE",
            [sorted(record_ids)],
        )
