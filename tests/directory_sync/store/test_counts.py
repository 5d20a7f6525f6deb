"""DirectoryRecordCount upkeep (directory_sync.store.counts): folding, checking, rebuilding,
and ``manage.py directory_sync reconcile`` repairing wrong SCIM list counts."""

import io
import json

import pytest
from django.core.management import call_command

from directory_sync import tasks
from directory_sync.models import RECORD_COUNT_BLOCK, DirectoryRecord, DirectoryRecordCount
from directory_sync.store import counts as record_counts
from directory_sync.store.counts import CountDifference

pytestmark = pytest.mark.django_db

USER = DirectoryRecord.ResourceType.USER
GROUP = DirectoryRecord.ResourceType.GROUP


def _records(organization, count: int, resource_type: str = USER) -> list[DirectoryRecord]:
    return [
        DirectoryRecord.objects.create(
            organization=organization, resource_type=resource_type, document={"schemas": []}
        )
        for _ in range(count)
    ]


def _rows(organization, resource_type: str = USER) -> list[tuple[int, int]]:
    return list(
        DirectoryRecordCount.objects.filter(organization=organization, resource_type=resource_type)
        .order_by("block", "id")
        .values_list("block", "live")
    )


def test_writes_append_rows_and_a_fold_leaves_one_per_block(organization):
    records = _records(organization, 5)
    records[0].delete()
    assert len(_rows(organization)) == 6

    record_counts.counts_compact(organization_id=organization.pk, resource_type=USER)

    blocks = sorted({r.pk // RECORD_COUNT_BLOCK for r in records[1:]})
    assert [block for block, _ in _rows(organization)] == blocks
    assert sum(live for _, live in _rows(organization)) == 4


def test_a_fold_drops_blocks_that_sum_to_zero(organization):
    records = _records(organization, 2)
    for record in records:
        record.delete()

    record_counts.counts_compact(organization_id=organization.pk, resource_type=USER)

    assert _rows(organization) == []


def test_fold_all_folds_only_what_has_extra_rows(organization, other_organization):
    _records(organization, 3)
    _records(other_organization, 1)
    _records(organization, 1, GROUP)

    assert record_counts.counts_compact_all(min_extra_rows=1) == 1  # acme's users only
    assert len(_rows(organization, GROUP)) == 1
    assert tasks.fold_record_counts.apply().get() == 0  # nothing left beyond one per block


def test_the_fold_task_is_scheduled(settings):
    tasks_scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "directory_sync.fold_record_counts" in tasks_scheduled


def test_a_list_page_folds_when_it_reads_many_rows(organization, monkeypatch, scim):
    monkeypatch.setattr(record_counts, "COMPACT_AFTER", 3)
    _records(organization, 6)

    scim.get("/Users", params={"count": 1})

    assert len(_rows(organization)) == len({b for b, _ in _rows(organization)})
    assert scim.get("/Users").json()["totalResults"] == 6


def test_differences_name_the_resource_type_and_both_totals(organization):
    _records(organization, 3)
    _records(organization, 2, GROUP)
    DirectoryRecordCount.objects.create(
        organization=organization, resource_type=USER, block=10**6, live=1
    )
    DirectoryRecordCount.objects.filter(organization=organization, resource_type=GROUP).delete()

    found = record_counts.counts_differences(organization_id=organization.pk)

    assert found == [
        CountDifference(resource_type=GROUP, counted=0, live=2, blocks=1),
        CountDifference(resource_type=USER, counted=4, live=3, blocks=1),
    ]


def test_rebuild_recounts_the_live_records(organization):
    records = _records(organization, 4)
    records[1].delete()
    DirectoryRecordCount.objects.filter(organization=organization).update(live=7)

    record_counts.counts_rebuild(organization_id=organization.pk, resource_type=USER)

    assert sum(live for _, live in _rows(organization)) == 3
    assert record_counts.counts_differences(organization_id=organization.pk) == []


def _reconcile(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("directory_sync", "reconcile", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_reconcile_reports_wrong_list_counts_and_fix_rebuilds_them(organization):
    # Users never applied: reconcile also reports their missing members (not asserted here).
    _records(organization, 2)
    DirectoryRecordCount.objects.filter(organization=organization).delete()

    out, err = _reconcile("--format", "json")
    rows = [r for r in json.loads(out) if r["kind"] == "record_count"]
    assert [(r["resource_type"], r["scim_id"], r["detail"]) for r in rows] == [
        ("User", "", "list counts say 0 live records, there are 2 (1 block(s) of ids differ)")
    ]
    assert "1 list count(s) can be rebuilt with --fix --yes.\n" in err

    out, _ = _reconcile("--fix")
    assert "Would rebuild 1 list count(s)." in out
    assert _rows(organization) == []

    out, _ = _reconcile("--fix", "--yes")
    assert "Rebuilt 1 list count(s)." in out
    assert sum(live for _, live in _rows(organization)) == 2
    rows = json.loads(_reconcile("--format", "json")[0])
    assert "record_count" not in {r["kind"] for r in rows}
