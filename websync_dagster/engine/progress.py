"""Progress lines for long transfers: rows, MB and rate, at most every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

Reporter = Callable[[str], None]
#: seconds between two progress lines when the caller does not say (a run passes WEBSYNC_PROGRESS_EVERY_S)
DEFAULT_EVERY_S = 5.0


class Progress:
    def __init__(self, label: str, report: Reporter | None, *, total_bytes: int = 0, total_rows: int = 0,
                 every_s: float = DEFAULT_EVERY_S, estimated: bool = False) -> None:
        """``estimated``: the totals are dev's estimate (shown with ``~``), not the size of a finished file."""
        self.label = label
        self.report = report
        self.total_bytes = total_bytes
        self.total_rows = total_rows
        self.estimated = estimated
        self.every_s = every_s
        self.bytes = 0
        self.started = time.perf_counter()
        self._last = self.started

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        mb, rate = self.bytes / 1e6, self.bytes / 1e6 / elapsed
        if self.total_bytes:
            rows = round(self.total_rows * self.bytes / self.total_bytes)
            about = "~" if self.estimated else ""
            return (f"{self.label}: {mb:.1f} of {about}{self.total_bytes / 1e6:.1f} MB (~{rows} of {about}"
                    f"{self.total_rows} rows), {rate:.1f} MB/s")
        return f"{self.label}: {mb:.1f} MB, {rate:.1f} MB/s"

    def add(self, n: int) -> None:
        self.bytes += n
        now = time.perf_counter()
        if self.report and now - self._last >= self.every_s:
            self._last = now
            self.report(self.line())

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.add(len(chunk))
            yield chunk
