"""How the CLI shows the steps' messages: on a terminal, transfers (``TransferProgress`` events) as live
progress bars (rich); otherwise, and for every other event or message, one plain line each."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from websync_dagster.engine.events import Event, TransferProgress

if TYPE_CHECKING:  # rich is imported when the first bar is drawn: a run not on a terminal never needs it
    from rich.progress import Progress, TaskID


class MessageView:
    """Prints ``websync: <message>`` lines; on a terminal, transfer progress moves a bar per table instead.
    One per run, made by the CLI and handed to what prints (the messages logger, the report)."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        """``stream``: stderr (as it is when a message is shown) unless given; ``live``: bars when it is a
        terminal, unless given."""
        self._stream = self._given = stream
        self._owned: TextIO | None = None  # a duplicate of a descriptor, closed when another is attached
        self._live = live
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def attach(self, stream: TextIO) -> None:
        """Show messages on ``stream`` from now on, through a duplicate of its file descriptor when it has
        one: while steps run, Dagster points the process's stderr at its compute-log capture, and the bars
        must still reach the user's terminal."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None
        try:
            self._stream = self._owned = os.fdopen(os.dup(stream.fileno()), "w", buffering=1, encoding="utf-8")
        except (OSError, ValueError, io.UnsupportedOperation):  # a stream without a descriptor (captured)
            self._stream = stream

    def detach(self) -> None:
        """Back to the stream given (or stderr): the bars stopped, the duplicate ``attach`` made closed."""
        self.close()
        if self._owned is not None:
            self._owned.close()
            self._owned = None
        self._stream = self._given

    @contextlib.contextmanager
    def attached(self, stream: TextIO) -> Iterator[MessageView]:
        """``attach`` for the block, ``detach`` after it."""
        self.attach(stream)
        try:
            yield self
        finally:
            self.detach()

    @property
    def live(self) -> bool:
        return self.stream.isatty() if self._live is None else self._live

    def say(self, text: str) -> None:
        """The CLI's own line (what it runs, a note, how the run ended)."""
        self.line(f"websync: {text}")

    def error(self, text: str) -> None:
        self.line(f"websync: error: {text}")

    def message(self, text: str) -> None:
        """A step's message that is no engine event (a status, a reindex request)."""
        self.say(text)

    def show(self, event: Event) -> None:
        """An engine event: a transfer's progress moves its bar (on a terminal); any other is its line."""
        if isinstance(event, TransferProgress) and self.live:
            self._move(event)
        elif event.level in ("warning", "error"):
            self.line(f"websync: {event.level}: {event.text()}")
        else:
            self.line(f"websync: {event.text()}")

    def _move(self, event: TransferProgress) -> None:
        bars, label = self._progress(), event.label
        total = event.total_bytes or None
        if label not in self._tasks:
            self._tasks[label] = bars.add_task(label, total=total)
        bars.update(self._tasks[label], completed=event.done_bytes, total=total, refresh=True)

    def line(self, text: str) -> None:
        if self._bars is not None:
            self._bars.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def _progress(self) -> Progress:
        if self._bars is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(),
                                  console=Console(file=self.stream), transient=True)
            self._bars.start()
        return self._bars

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._tasks.clear()
