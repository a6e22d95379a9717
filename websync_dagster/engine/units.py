"""Commit units: an export file cut, at row boundaries, into pieces that prod commits one at a time.

Why: a table shipped in one transaction is lost whole when the link breaks near its end, and the
same run then sends it all again. Committed in units, a cut loses only the unit in flight: the run
reconnects, exports the delta again (which leaves out what prod now holds) and sends the rest.

A unit closes at the first row boundary after it has been sending for ``every_s`` seconds, or, from the
second unit on, once it holds ``every_s`` seconds' worth of bytes at the rate the earlier units were
committed: the sender runs ahead of a slow link by what the buffers on the way hold (MBs), which a cut
also loses and which a commit waits for, so the rate measured from commit to commit is the link's. On
any link a cut costs about that much sending, and a unit's own cost (a commit and a few round trips)
stays a small part of it. A small delta is one unit. Each unit is a whole CSV (the file's
header, then whole rows), so prod never holds part of a row, and a unit it refuses can be sent again,
from the file, to the staged path.

Row boundaries: Postgres writes CSV with ``"`` as its only quote and escape, so a newline ends a row
exactly when the number of ``"`` before it is even.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

READ_SIZE = 1 << 20


def row_end(data: bytes, start: int, quoted: bool) -> int | None:
    """The offset just after the first newline at or after ``start`` that ends a row, or None.
    ``quoted``: whether ``data[start]`` is inside a quoted field."""
    pos = start
    while (newline := data.find(b"\n", pos)) >= 0:
        quoted ^= data.count(b'"', pos, newline) % 2 == 1
        if not quoted:
            return newline + 1
        pos = newline + 1
    return None


class UnitCutter:
    """Reads an export CSV from ``chunks`` (the file's bytes from its start, as they are written) and
    hands out one ``Unit`` at a time; ``fd`` is an open descriptor of the same file, to send a unit again.
    ``every_s`` None: the whole file is one unit."""

    def __init__(self, chunks: Iterator[bytes], fd: int, every_s: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._chunks = chunks
        self._clock = clock
        self._first_started: float | None = None  # when the first unit began to send
        self._fd = fd
        self.every_s = every_s
        self._buffer = b""
        self._offset = 0  # file offset of the buffer's first byte
        self._quoted = False  # whether the buffer starts inside a quoted field
        self._ended = False
        self._error: BaseException | None = None
        self.header = b""
        self.units = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _fill(self) -> bool:
        """Read more of the file into the buffer; False at its end. An error of the source (the export
        failed) is raised again at every later call: a failed file never looks ended."""
        if self._error is not None:
            raise self._error
        if self._ended:
            return False
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._ended = True
            return False
        except BaseException as exc:
            self._error = exc
            raise
        self._buffer += chunk
        return True

    def _take(self, n: int) -> bytes:
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        self._quoted ^= data.count(b'"') % 2 == 1
        self._offset += n
        return data

    def _read_header(self) -> None:
        while not self.header:
            end = row_end(self._buffer, 0, self._quoted)
            if end is not None:
                self.header = self._take(end)
            elif not self._fill():
                raise ValueError("the export file ended before its header line")

    def has_rows(self) -> bool:
        """Whether rows remain to be sent; waits until the file has some or has ended."""
        self._read_header()
        while not self._buffer:
            if not self._fill():
                return False
        return True

    def next_unit(self) -> Unit:
        self.units += 1
        return Unit(self, self._offset)

    def _budget(self, started: float) -> float:
        """Bytes a unit starting now may hold: ``every_s`` at the rate of the units committed so far (from
        the first unit's start to this one's, commits included); no limit for the first unit."""
        if self._first_started is None:
            self._first_started = started
        elapsed = started - self._first_started
        sent = self._offset - len(self.header)
        if self.every_s is None or elapsed <= 0 or sent <= 0:
            return float("inf")
        return self.every_s * sent / elapsed

    def _stream(self, unit: Unit) -> Iterator[bytes]:
        """The unit as it is read: the header, then rows until the unit's time or bytes are up (or the file ends)."""
        yield self.header
        started = self._clock()
        budget = self._budget(started)
        while True:
            if not self._buffer and not self._fill():
                break
            due = self._offset - unit.start >= budget or self._clock() - started >= (self.every_s or 0)
            if self.every_s is not None and due:
                end = row_end(self._buffer, 0, self._quoted)
                if end is not None:
                    yield self._take(end)
                    break
            yield self._take(len(self._buffer))
        unit.end = self._offset

    def last_row(self, unit: Unit, rows_before: int) -> int | None:
        """The unit's last row, numbered from 1 in the file (``rows_before`` rows precede the unit), read
        from the file; None while the unit's end is not known (it stopped before its end). For messages."""
        if unit.end is None:
            return None
        rows, quoted = rows_before, False
        for data in self._replay(unit.start, unit.end):
            if data is self.header:
                continue
            newlines = data.count(b"\n")
            if not quoted and b'"' not in data:
                rows += newlines
                continue
            pos = 0
            while (newline := data.find(b"\n", pos)) >= 0:
                quoted ^= data.count(b'"', pos, newline) % 2 == 1
                rows += not quoted
                pos = newline + 1
            quoted ^= data.count(b'"', pos) % 2 == 1
        return rows

    def _replay(self, start: int, end: int) -> Iterator[bytes]:
        yield self.header
        offset = start
        while offset < end:
            data = os.pread(self._fd, min(READ_SIZE, end - offset), offset)
            if not data:
                raise OSError(f"the export file is shorter than it was ({offset} of {end} bytes)")
            offset += len(data)
            yield data


class Unit:
    """One commit unit. ``source()`` is a ``CopyIn`` source: the first call streams the rows as the file
    is read (and fixes where the unit ends); a later call sends the same rows again, from the file."""

    def __init__(self, cutter: UnitCutter, start: int) -> None:
        self._cutter = cutter
        self.start = start
        self.end: int | None = None
        self._live: Iterator[bytes] | None = None

    def source(self) -> Iterator[bytes]:
        if self._live is None:
            self._live = self._cutter._stream(self)
            return self._live
        self.read_to_end()
        assert self.end is not None
        return self._cutter._replay(self.start, self.end)

    def read_to_end(self) -> None:
        """Read the rest of the unit (an attempt that stopped early), so that the next one starts after it."""
        if self._live is None:
            self._live = self._cutter._stream(self)
        for _ in self._live:
            pass
