"""``DirectoryRecordCount`` upkeep: fold the rows the triggers append, check them, rebuild them.

The triggers of migration 0003 append a ``+1``/``-1`` row per liveness change of a record, in
the writer's transaction; SCIM list pages sum them (``store.pages``). Folding
keeps the sum cheap: lists fold an organization's rows when they find many
(``COMPACT_AFTER``), and the ``directory_sync.fold_record_counts`` beat task folds whatever no
list read. ``manage.py directory_sync reconcile`` reports counts that disagree with the records
(``counts_differences``) and ``--fix --yes`` rebuilds them (``counts_rebuild``): only possible
if the triggers were bypassed, e.g. a data-only restore with triggers enabled.
"""

from dataclasses import dataclass

from django.db import connection, transaction

from ..models import RECORD_COUNT_BLOCK, DirectoryRecord, DirectoryRecordCount
from .db import is_postgres

# Count rows beyond one per block a list may find before it folds them: every page reads
# every row, every fold is a write.
COMPACT_AFTER = 256

_RECORDS = DirectoryRecord._meta.db_table
_COUNTS = DirectoryRecordCount._meta.db_table


def counts_compact(*, organization_id: int, resource_type: str) -> None:
    """Fold an organization's count rows into one per block (blocks summing to zero go).

    On PostgreSQL one statement moves exactly the rows it deletes (``RETURNING``): a row that a
    concurrent fold deleted first is skipped, one committed after its snapshot stays, so folds
    and writers never lose or double a count and need no lock.
    """
    params = {"organization": organization_id, "resource_type": resource_type}
    with transaction.atomic():
        with connection.cursor() as cursor:
            if is_postgres():
                cursor.execute(
                    f"""
                    WITH gone AS (
                        DELETE FROM {_COUNTS}
                        WHERE organization_id = %(organization)s
                            AND resource_type = %(resource_type)s
                        RETURNING block, live
                    )
                    INSERT INTO {_COUNTS} (organization_id, resource_type, block, live)
                    SELECT %(organization)s, %(resource_type)s, block, SUM(live)
                    FROM gone GROUP BY block HAVING SUM(live) <> 0""",
                    params,
                )
                return
            # SQLite: this transaction holds the write lock from its start (settings:
            # ``transaction_mode IMMEDIATE``), so no writer runs in between.
            cursor.execute(
                f"""
                SELECT block, SUM(live) FROM {_COUNTS}
                WHERE organization_id = %(organization)s AND resource_type = %(resource_type)s
                GROUP BY block HAVING SUM(live) <> 0""",
                params,
            )
            folded = cursor.fetchall()
        DirectoryRecordCount.objects.filter(
            organization_id=organization_id, resource_type=resource_type
        ).delete()
        DirectoryRecordCount.objects.bulk_create(
            DirectoryRecordCount(
                organization_id=organization_id, resource_type=resource_type, block=b, live=n
            )
            for b, n in folded
        )


def counts_compact_all(*, min_extra_rows: int = 0) -> int:
    """Fold every organization's rows that have more than ``min_extra_rows`` rows beyond one
    per block (organizations deleted since included: their rows fold to nothing). Returns how
    many (organization, resource type) pairs were folded."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT organization_id, resource_type FROM {_COUNTS}
            GROUP BY organization_id, resource_type
            HAVING COUNT(*) - COUNT(DISTINCT block) > %s""",
            [min_extra_rows],
        )
        pairs = cursor.fetchall()
    for organization_id, resource_type in pairs:
        counts_compact(organization_id=organization_id, resource_type=resource_type)
    return len(pairs)


@dataclass(frozen=True)
class CountDifference:
    """The counts of one organization's resource type disagree with its live records."""

    resource_type: str
    counted: int
    live: int
    blocks: int


def counts_differences(*, organization_id: int) -> list[CountDifference]:
    """Compare the counts with the live records, block by block, in one statement (one
    snapshot: concurrent writes cannot make them look different). Read-only."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT resource_type, block, SUM(counted), SUM(live) FROM (
                SELECT resource_type, block, live AS counted, 0 AS live FROM {_COUNTS}
                WHERE organization_id = %(organization)s
                UNION ALL
                SELECT resource_type, id / {RECORD_COUNT_BLOCK}, 0, 1 FROM {_RECORDS}
                WHERE organization_id = %(organization)s AND deleted_at IS NULL
            ) counts
            GROUP BY resource_type, block""",
            {"organization": organization_id},
        )
        rows = cursor.fetchall()
    totals: dict[str, list[int]] = {}
    for resource_type, _block, counted, live in rows:
        entry = totals.setdefault(resource_type, [0, 0, 0])
        entry[0] += int(counted)
        entry[1] += int(live)
        entry[2] += int(counted) != int(live)
    return [
        CountDifference(resource_type=t, counted=c, live=n, blocks=b)
        for t, (c, n, b) in sorted(totals.items())
        if b
    ]


def counts_rebuild(*, organization_id: int, resource_type: str) -> None:
    """Replace an organization's counts by a recount of its live records.

    On PostgreSQL the counts table is locked against writes (record writers append to it, so
    they wait) and folds for the recount, which then sees every committed record and count.
    """
    params = {"organization": organization_id, "resource_type": resource_type}
    with transaction.atomic():
        with connection.cursor() as cursor:
            if is_postgres():
                cursor.execute(f"LOCK TABLE {_COUNTS} IN SHARE ROW EXCLUSIVE MODE")
            cursor.execute(
                f"""
                DELETE FROM {_COUNTS}
                WHERE organization_id = %(organization)s AND resource_type = %(resource_type)s""",
                params,
            )
            cursor.execute(
                f"""
                INSERT INTO {_COUNTS} (organization_id, resource_type, block, live)
                SELECT organization_id, resource_type, id / {RECORD_COUNT_BLOCK}, COUNT(*)
                FROM {_RECORDS}
                WHERE organization_id = %(organization)s AND resource_type = %(resource_type)s
                    AND deleted_at IS NULL
                GROUP BY organization_id, resource_type, id / {RECORD_COUNT_BLOCK}""",
                params,
            )
