"""Progress of long transfers: a ``TransferProgress`` event (rows, MB and rate) at most every few seconds."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Literal

from websync_dagster.engine.events import EventSink, TransferProgress

#: seconds between two progress lines when the caller does not say (a run passes WEBSYNC_PROGRESS_EVERY_S)
DEFAULT_EVERY_S = 5.0


class Progress:
    def __init__(self, table: str, phase: Literal["export", "load"], report: EventSink | None, *,
                 total_bytes: int = 0, total_rows: int = 0, every_s: float = DEFAULT_EVERY_S,
                 estimated: bool = False) -> None:
        """``estimated``: the totals are dev's estimate (shown with ``~``), not the size of a finished file."""
        self.table = table
        self.phase: Literal["export", "load"] = phase
        self.report = report
        self.total_bytes = total_bytes
        self.total_rows = total_rows
        self.estimated = estimated
        self.every_s = every_s
        self.bytes = 0
        self.started = time.perf_counter()
        self._last = self.started

    def event(self) -> TransferProgress:
        return TransferProgress(self.table, self.phase, self.bytes, self.total_bytes, self.total_rows, self.estimated,
                                time.perf_counter() - self.started)

    def add(self, n: int) -> None:
        self.bytes += n
        now = time.perf_counter()
        if self.report and now - self._last >= self.every_s:
            self._last = now
            self.report(self.event())

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.add(len(chunk))
            yield chunk
