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


def test_the_diff_table_shows_the_split_by_version_once_a_table_is_opted_in():
    """`websync diff`, diff_job and the sensor print one table: the version columns join it when a table is opted
    in (empty cells for the others), and stay out of it when none is."""
    from websync_dagster.core.report import text_table
    from websync_dagster.defs.ops import DIFF_COLUMNS, VERSION_COLUMNS, diff_rows

    files = TableDiff("web_files", dev_rows=8, prod_rows=8, missing_in_prod=1, only_in_prod=0, changed=2)
    assert [list(r) for r in diff_rows([files])] == [list(DIFF_COLUMNS)]
    rows = diff_rows([files, _diff(7).with_versions("updated_at", 2, 1, 3)])
    assert list(rows[1]) == [*DIFF_COLUMNS, *VERSION_COLUMNS]
    assert [rows[1][c] for c in VERSION_COLUMNS] == [2, 1, 1, 3] and rows[0]["version_only"] is None
    header, first, second = text_table(rows).splitlines()
    assert header.split()[-1] == "version_only" and first.split()[-1] == "NaN" and second.split()[-1] == "3.0"
