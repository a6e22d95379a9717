"""The CLI's text table: what pandas printed, without importing pandas (nor numpy) on the CLI's path."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from websync_dagster.core.report import markdown_table, text_table

# the tables below as `pd.DataFrame(rows).to_string(index=False)` printed them (pandas 3.1)
NOOP_SYNC = [
    {"table": "web_sources", "prod before": 40, "prod after": 40, "inserted": 0, "already present": 40,
     "skipped (other key)": 0, "rejected": 0, "MB": 0.0, "s": 0.011, "mode": "nothing to ship"},
    {"table": "knowledge_base", "prod before": 2500, "prod after": 2500, "inserted": 0, "already present": 2500,
     "skipped (other key)": 0, "rejected": 0, "MB": 0.0, "s": 0.022, "mode": "nothing to ship"},
    {"table": "web_pages", "prod before": 20000, "prod after": 20000, "inserted": 0, "already present": 20000,
     "skipped (other key)": 0, "rejected": 0, "MB": 0.0, "s": 0.161, "mode": "nothing to ship"},
    {"table": "web_files", "prod before": 3500, "prod after": 3500, "inserted": 0, "already present": 3500,
     "skipped (other key)": 0, "rejected": 0, "MB": 0.0, "s": 0.034, "mode": "nothing to ship"},
]
NOOP_SYNC_TEXT = "\n".join([
    "         table  prod before  prod after  inserted  already present  skipped (other key)  rejected  MB     s"
    "            mode",
    "   web_sources           40          40         0               40                    0         0 0.0 0.011"
    " nothing to ship",
    "knowledge_base         2500        2500         0             2500                    0         0 0.0 0.022"
    " nothing to ship",
    "     web_pages        20000       20000         0            20000                    0         0 0.0 0.161"
    " nothing to ship",
    "     web_files         3500        3500         0             3500                    0         0 0.0 0.034"
    " nothing to ship",
])
FULL_SYNC = [
    {"table": "web_sources", "inserted": 40, "MB": 0.02, "s": 0.021, "mode": "direct copy"},
    {"table": "knowledge_base", "inserted": 2500, "MB": 86.99, "s": 2.726, "mode": "direct copy"},
    {"table": "web_pages", "inserted": 20000, "MB": 357.56, "s": 10.369, "mode": "direct copy"},
    {"table": "web_files", "inserted": 3500, "MB": 16.38, "s": 0.5, "mode": "direct copy"},
]
FULL_SYNC_TEXT = """\
         table  inserted     MB      s        mode
   web_sources        40   0.02  0.021 direct copy
knowledge_base      2500  86.99  2.726 direct copy
     web_pages     20000 357.56 10.369 direct copy
     web_files      3500  16.38  0.500 direct copy"""
DRY_RUN = [
    {"table": "web_sources", "would insert": 3, "MB": 0.5, "would fail": ""},
    {"table": "web_pages", "would insert": -1, "MB": 1.25, "would fail": "prod lacks column a|b"},
]
DRY_RUN_TEXT = "\n".join([
    "      table  would insert   MB            would fail",
    "web_sources             3 0.50 " + " " * len("prod lacks column a|b"),
    "  web_pages            -1 1.25 prod lacks column a|b",
])
ODD = [
    {"n": 1, "big": 123456789.123, "tiny": 0.0000001, "flag": True, "text": "a\nb"},
    {"n": None, "big": 2.0, "tiny": 1.0, "flag": False, "extra": 7},
]
ODD_TEXT = """\
  n          big         tiny  flag text  extra
1.0 1.234568e+08 1.000000e-07  True a\\nb    NaN
NaN 2.000000e+00 1.000000e+00 False  NaN    7.0"""


@pytest.mark.parametrize(("rows", "text"), [(NOOP_SYNC, NOOP_SYNC_TEXT), (FULL_SYNC, FULL_SYNC_TEXT),
                                            (DRY_RUN, DRY_RUN_TEXT), (ODD, ODD_TEXT), ([], "(nothing)")])
def test_text_table_prints_what_pandas_printed(rows: list[dict], text: str) -> None:
    assert text_table(rows) == text


def test_markdown_table_escapes_pipes() -> None:
    assert markdown_table(DRY_RUN[1:]) == ("| table | would insert | MB | would fail |\n| --- | --- | --- | --- |\n"
                                           "| web_pages | -1 | 1.25 | prod lacks column a\\|b |")


def _columns() -> st.SearchStrategy[tuple[str, st.SearchStrategy]]:
    """A column of one kind of value, as the CLI's tables have (counts, MB, seconds, names, flags)."""
    floats = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
    kinds = st.sampled_from([
        st.integers(min_value=-10**12, max_value=10**12),
        floats,
        st.floats(min_value=0, max_value=1e5).map(lambda f: round(f, 3)),
        st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), max_size=12),
        st.booleans(),
    ])
    # headers are the CLI's own names ("prod before"): never blank, no space at either end (pandas pads those
    # its own way)
    letters = st.characters(codec="ascii", categories=["L", "Zs"])
    names = st.text(letters, min_size=1, max_size=10).filter(lambda s: s == s.strip() != "")
    return st.tuples(names, kinds)


@settings(max_examples=150, deadline=None)  # with the fixed tables above; 300 cost 2 s more of the fast layer
@given(st.lists(_columns(), min_size=1, max_size=5, unique_by=lambda c: c[0]), st.data())
def test_text_table_matches_pandas(columns: list[tuple[str, st.SearchStrategy]], data: st.DataObject) -> None:
    pd = pytest.importorskip("pandas")
    n = data.draw(st.integers(min_value=1, max_value=6))
    rows = [{name: data.draw(kind) for name, kind in columns} for _ in range(n)]
    assert text_table(rows) == pd.DataFrame(rows).to_string(index=False)


@pytest.mark.servers  # a Python subprocess
@pytest.mark.parametrize("module", ["websync_dagster.cli", "websync_dagster.definitions"])
def test_the_cli_does_not_import_pandas_or_numpy(module: str) -> None:
    """A no-op `websync sync` is mostly start-up: pandas and numpy were 0.4-0.5 s of it."""
    code = f"import sys, {module}; print(sorted({{'pandas', 'numpy'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
