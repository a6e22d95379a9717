"""A table's delta export in its own thread, writing the file its load follows, and how it is ended
when the load stops first."""

from __future__ import annotations

import contextlib
import threading
import time

from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.events import EventSink
from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.export_load import run_export
from websync_dagster.engine.follow import FollowedFile

#: how long a load that stopped waits for its export to end (dev's statement cancelled again every
#: EXPORT_CANCEL_EVERY_S: a cancel that lands between two statements is lost), before dev's socket is shut down
EXPORT_STOP_S, EXPORT_CANCEL_EVERY_S = 2.0, 0.5


class ExportThread:
    """The delta export of one table in a thread, writing a file that the load follows. A load that stops
    before the end of the file (interrupted, its link lost, a failure) ends the export with it (``stop``)."""

    def __init__(self, ctx: SyncContext, table: str, run_id: str, report: EventSink | None) -> None:
        self.followed = FollowedFile()
        # the export's link to dev (reopened here if broken), ended from the load's thread
        self._stopper = ctx.dev_side.stopper()
        self._result: ExportResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(ctx, table, run_id, report),
                                        name=f"websync-export-{table}", daemon=True)
        self._thread.start()

    def _run(self, ctx: SyncContext, table: str, run_id: str, report: EventSink | None) -> None:
        try:
            self._result = run_export(ctx, table, scope="delta", run_id=run_id, report=report, follow=self.followed)
        except BaseException as exc:  # handed to the load's thread by finish()
            self._error = exc
            self.followed.finished(exc)

    def finish(self) -> ExportResult:
        """Wait for the export; its result, or its error raised here. Called once the load read the whole
        file, or the export failed (the load that stops for its own reason calls ``stop``)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def result(self) -> ExportResult | None:
        """The export's result; None if it failed or was stopped."""
        return self._result

    def stop(self) -> None:
        """End the export now if the load stopped before the end of the file, rather than let dev send the
        rest of the table; within about EXPORT_STOP_S. The export is told to stop at its next chunk and
        dev's statement is cancelled, again until the export ends; then dev's socket is shut down (the
        export's call fails, and the next use of ``SyncContext.dev`` opens another connection)."""
        if self.followed.done:  # written to the end (or failed): the thread is only returning
            self._thread.join(EXPORT_STOP_S)
            return
        self.followed.cancel()
        deadline = time.monotonic() + EXPORT_STOP_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                self._stopper.cancel(timeout=EXPORT_STOP_S)
            self._thread.join(EXPORT_CANCEL_EVERY_S)
        if self._thread.is_alive():
            self._stopper.shut_down()
            self._thread.join(EXPORT_CANCEL_EVERY_S)

