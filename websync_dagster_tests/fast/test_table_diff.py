"""A table's diff split by version: rows that differ only in their version are not changed (no server)."""

from __future__ import annotations

from websync_dagster.engine.table_diff import TableDiff


def _diff(changed: int) -> TableDiff:
    return TableDiff("web_pages", dev_rows=10, prod_rows=10, missing_in_prod=0, only_in_prod=0, changed=changed)


def test_rows_that_differ_only_in_their_version_are_not_changed_and_the_table_reads_in_sync():
    diff = _diff(3).with_versions("updated_at", 0, 0, 3)
    assert (diff.changed, diff.newer_in_dev, diff.newer_in_prod, diff.same_version_differs) == (0, 0, 0, 0)
    assert diff.version_only == 3 and diff.in_sync
    assert diff.summary() == ("web_pages: 0 missing in prod, 0 only in prod, 0 changed; "
                              "3 differ only in updated_at, content the same")


def test_the_changed_rows_are_split_by_version_besides_the_version_only_ones():
    diff = _diff(7).with_versions("updated_at", 2, 1, 3)
    assert (diff.changed, diff.newer_in_dev, diff.newer_in_prod, diff.same_version_differs, diff.version_only) == (
        4, 2, 1, 1, 3)
    assert not diff.in_sync
    assert diff.summary().endswith("4 changed (2 newer in dev, 1 newer in prod, 1 same version); "
                                   "3 differ only in updated_at, content the same")


def test_a_version_not_compared_leaves_the_changed_count_as_the_rows_hashes_say():
    """A version column the table overrides is not hashed: its version-only rows were never among the changed."""
    diff = _diff(2).with_versions("revision", 2, 0, 5, version_compared=False)
    assert (diff.changed, diff.same_version_differs, diff.version_only) == (2, 0, 5)


def test_a_table_not_opted_in_has_no_split():
    diff = _diff(2)
    assert diff.version_only is None and diff.newer_in_dev is None
    assert diff.summary() == "web_pages: 0 missing in prod, 0 only in prod, 2 changed"
