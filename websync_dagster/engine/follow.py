"""An export file that the load reads while the export is still writing it.

The raw ``COPY TO | COPY FROM`` pipe keeps dev and prod busy at the same time; an export file written
first and loaded second makes it two passes. Following the file as it grows gives the pipe's overlap
and still leaves the whole file on disk: for the record (path, sha256), and for the staged path when
prod refuses the fast path's COPY.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

READ_CHUNK = 1 << 20
#: how often a reader at the end of the file looks again when the writer has not said anything
POLL_S = 0.05


class ExportAborted(Exception):
    """The export stopped before the end; the reader's COPY must not commit what it read."""


class ExportCancelled(Exception):
    """The reader stopped before the end (interrupted, its link lost, its load failed): the export ends
    without writing the rest."""


class FollowedFile:
    """Written by one thread (``opened``, ``grew``, ``finished``), read by another (``chunks``)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._reader: BinaryIO | None = None
        self._done = False
        self._cancelled = False
        self._error: BaseException | None = None
        self.estimated_bytes = self.estimated_rows = 0

    def opened(self, path: Path, estimated_bytes: int = 0, estimated_rows: int = 0) -> None:
        """The file exists; prod is no longer needed by the export (its keys are read). The file is
        opened for reading here, before the writer can rename it. The estimates (dev's, of the whole
        file) give the reader's progress a total."""
        reader = open(path, "rb")  # noqa: SIM115 - closed by chunks() or close()
        self.estimated_bytes, self.estimated_rows = estimated_bytes, estimated_rows
        with self._changed:
            self._reader = reader
            self._changed.notify_all()

    def grew(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def finished(self, error: BaseException | None = None) -> None:
        """Everything is written and flushed (or, with ``error``, the export failed)."""
        with self._changed:
            self._done = True
            self._error = error
            self._changed.notify_all()

    @property
    def done(self) -> bool:
        """Whether the writer said it finished (the file is whole, or the export failed)."""
        with self._changed:
            return self._done

    @property
    def failed(self) -> bool:
        """Whether the writer said the export failed."""
        with self._changed:
            return self._error is not None

    def cancel(self) -> None:
        """The reader stopped for good: the writer ends at its next ``check_cancelled``."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()

    def check_cancelled(self) -> None:
        """Raises ExportCancelled once the reader cancelled: the writer calls it between chunks."""
        if self._cancelled:
            raise ExportCancelled("the load following the export stopped")

    def wait_opened(self) -> bool:
        """Whether the export opened its file (False: it failed first); waits until one or the other."""
        with self._changed:
            self._changed.wait_for(lambda: self._reader is not None or self._done)
            return self._reader is not None and self._error is None

    def descriptor(self) -> int:
        """A new descriptor of the file (the caller closes it), which stays valid once the file is renamed
        or the reader closed: to read part of it again. Call after ``wait_opened`` returned True."""
        assert self._reader is not None
        return os.dup(self._reader.fileno())

    def close(self) -> None:
        with self._changed:
            if self._reader is not None:
                self._reader.close()

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, as they are written, to the end; raises ExportAborted if the export fails."""
        if not self.wait_opened():
            raise ExportAborted("the export failed before writing")
        assert self._reader is not None
        with self._reader as f:
            writer_done = False
            while True:
                chunk = f.read(READ_CHUNK)
                if chunk:
                    yield chunk
                    continue
                if writer_done:  # at the end of a file nobody writes any more
                    return
                with self._changed:
                    if self._error is not None:
                        raise ExportAborted(f"the export failed: {type(self._error).__name__}")
                    writer_done = self._done
                    if not writer_done:
                        self._changed.wait(POLL_S)
