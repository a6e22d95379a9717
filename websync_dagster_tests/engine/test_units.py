"""Commit units cut from an export CSV: whole rows each, nothing lost or repeated, the same when sent again.
No server: the CSV is written the way Postgres writes it (``"`` quotes, doubled inside a field)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from websync_dagster.engine.units import UnitCutter, row_end

HEADER = b"id,title,body\n"


def postgres_csv(rows: list[tuple[str, str, str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    return HEADER + out.getvalue().encode()


def pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` in pieces of the given sizes (cycled), as a growing file is read."""
    pos, i = 0, 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(data)
        yield data[pos:pos + size]
        pos += size
        i += 1


def cut(data: bytes, tmp: Path, sizes: list[int], every_s: float | None, replay: bool = False) -> list[bytes]:
    path = tmp / "export.csv"
    path.write_bytes(data)
    cutter = UnitCutter(pieces(data, sizes), os.open(path, os.O_RDONLY), every_s)
    units = []
    try:
        while cutter.has_rows():
            unit = cutter.next_unit()
            live = b"".join(unit.source())
            units.append(b"".join(unit.source()) if replay else live)
            if replay:
                assert units[-1] == live
    finally:
        cutter.close()
    return units


def parsed(unit: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(unit.decode(), newline="")))


def test_row_end_skips_newlines_inside_quoted_fields():
    data = b'1,"a\nb",c\n2,"x ""quoted""\n",y\n'
    first = row_end(data, 0, False)
    assert data[:first] == b'1,"a\nb",c\n'
    assert data[first:row_end(data, first, False)] == b'2,"x ""quoted""\n",y\n'
    assert row_end(b'1,"open\n', 0, False) is None


def test_without_a_time_limit_the_file_is_one_unit(tmp_path):
    data = postgres_csv([(str(i), "t", "b\n" * (i % 3)) for i in range(50)])
    assert cut(data, tmp_path, [7, 100, 3], None) == [data]


def test_units_close_at_the_first_row_end_once_their_time_is_up(tmp_path):
    rows = [(str(i), f"title {i}", 'body "with" a\nnewline') for i in range(20)]
    data = postgres_csv(rows)
    units = cut(data, tmp_path, [len(data)], 0.0)
    assert len(units) == 20  # the time is always up: one row each
    assert [parsed(u) for u in units] == [[["id", "title", "body"], list(r)] for r in rows]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.text(max_size=3), st.text(max_size=30), st.text(max_size=30)), max_size=30),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    every_s=st.sampled_from([0.0, None]),
    replay=st.booleans(),
)
def test_units_are_whole_rows_and_rebuild_the_file_exactly(tmp_path_factory, rows, sizes, every_s, replay):
    rows = [tuple(f.replace("\r", "").replace("\x00", "") for f in r) for r in rows]
    data = postgres_csv(rows)
    units = cut(data, tmp_path_factory.mktemp("u"), sizes, every_s, replay)
    assert all(u.startswith(HEADER) for u in units)
    assert HEADER + b"".join(u[len(HEADER):] for u in units) == data
    assert [row for u in units for row in parsed(u)[1:]] == [list(r) for r in rows]


def test_a_source_that_failed_never_looks_ended(tmp_path):
    def failing() -> Iterator[bytes]:
        yield HEADER + b"1,a,b\n"
        raise RuntimeError("export failed")

    path = tmp_path / "f.csv"
    path.write_bytes(HEADER)
    cutter = UnitCutter(failing(), os.open(path, os.O_RDONLY), None)
    assert cutter.has_rows()
    unit = cutter.next_unit()
    live = unit.source()
    assert next(live) == HEADER
    with pytest.raises(RuntimeError, match="export failed"):
        list(live)
    with pytest.raises(RuntimeError, match="export failed"):  # not taken for the file's end
        cutter.has_rows()
    cutter.close()


def test_after_the_first_unit_units_hold_the_bytes_the_link_takes_in_their_time(tmp_path):
    """The sender runs ahead of a slow link (buffers): the first unit, cut by time, sends 10x what the link
    takes in that time and its commit waits for the rest to drain. The next units are cut by bytes, at the
    rate measured from commit to commit, so that a cut never loses more than about ``every_s`` of link."""
    rows = [(str(i), "t" * 90, "b") for i in range(200)]  # ~100 bytes a row
    data = postgres_csv(rows)
    now = [0.0]
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    cutter = UnitCutter(pieces(data, [100]), os.open(path, os.O_RDONLY), 0.5, clock=lambda: now[0])
    sizes = []
    while cutter.has_rows():
        unit = cutter.next_unit()
        body = 0
        for piece in unit.source():
            now[0] += len(piece) / 10_000  # into the buffers, fast
            body += len(piece)
        body -= len(HEADER)
        now[0] += body / 1_000  # the commit waits until the link (1,000 B/s) has taken it all
        sizes.append(body)
    cutter.close()
    assert 4_500 <= sizes[0] <= 5_500  # 0.5 s at the buffers' speed
    assert all(300 <= s <= 700 for s in sizes[1:-1]), sizes  # 0.5 s at the link's
    assert sum(sizes) == len(data) - len(HEADER)
