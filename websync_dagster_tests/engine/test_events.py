"""The engine's typed events: each renders the line websync has always shown; progress and failures carry
their figures and reasons as fields (fast layer: no server)."""

from __future__ import annotations

from websync_dagster.core.errors import ConfigError, SyncError, TableSyncError
from websync_dagster.engine.events import (
    FailureReason,
    LockHolder,
    LockWaiting,
    Note,
    Reconnecting,
    TableExported,
    TableFailed,
    TableLanded,
    TableReexported,
    TableStarted,
    TableWarning,
    TransferProgress,
)
from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.failure import NotLoaded, failure_reason, internal_error, unit_failure
from websync_dagster.engine.lock_wait import LockWatch
from websync_dagster.engine.outcome import outcome_events
from websync_dagster.engine.progress import Progress
from websync_dagster.engine.table_run import TableRun


def test_transfer_progress_renders_the_progress_line():
    known = TransferProgress("web_pages", "load", 12_345_678, 45_000_000, 1000, True, 2.0)
    assert known.text() == "web_pages load: 12.3 of ~45.0 MB (~274 of ~1000 rows), 6.2 MB/s"
    assert known.label == "web_pages load" and known.done_rows == 274
    exact = TransferProgress("web_files", "export", 3_000_000, 6_000_000, 10, False, 1.0)
    assert exact.text() == "web_files export: 3.0 of 6.0 MB (~5 of 10 rows), 3.0 MB/s"
    unknown = TransferProgress("web_sources", "export", 1_500_000, 0, 0, True, 0.5)
    assert unknown.text() == "web_sources export: 1.5 MB, 3.0 MB/s" and unknown.done_rows == 0


def test_progress_sends_transfer_events_not_lines():
    told: list[object] = []
    progress = Progress("web_pages", "export", told.append, total_bytes=200, total_rows=20, every_s=0,
                        estimated=True)
    assert list(progress.wrap([b"x" * 50, b"y" * 50])) == [b"x" * 50, b"y" * 50]
    assert [type(e) for e in told] == [TransferProgress, TransferProgress]
    last = told[-1]
    assert isinstance(last, TransferProgress)
    assert (last.table, last.phase, last.done_bytes, last.total_bytes, last.total_rows, last.estimated) == \
        ("web_pages", "export", 100, 200, 20, True)


def test_table_events_render_the_lines_of_the_run_log():
    landed = TableLanded("knowledge_base", 59, 2, 58, 56, 0, 0, 3, "direct", 0.25)
    assert landed.text() == ("knowledge_base: exported 59 rows; prod 2 -> 58 rows, 56 inserted, 0 already present, "
                             "0 skipped, 3 rejected (direct, 0.25 s)")
    assert TableExported("web_pages", 7, "all", "/x/web_pages.csv").text() == \
        "web_pages: exported 7 rows (all) to /x/web_pages.csv"
    assert TableReexported("web_sources", "/x/ws.csv").text().startswith(
        "web_sources: web_sources/export was not selected: exported again the rows prod lacks now (/x/ws.csv)")
    assert TableWarning("knowledge_base", "override of chunk_count skipped: prod has no such column").text() == \
        "knowledge_base: override of chunk_count skipped: prod has no such column"
    assert TableWarning("t", "w").level == "warning" and TableStarted("t", True, False).level == "debug"
    assert TableStarted("web_pages", export=True, load=True).text() == "web_pages: started (export and load)"
    failed = TableFailed("web_files", FailureReason("table", "table not found in the dev database"))
    assert failed.text() == "web_files: table not found in the dev database" and failed.level == "error"
    assert Note("reindex not configured").text() == "reindex not configured"


def test_waits_and_retries_render_their_lines():
    holder = LockHolder(4242, "migrate", "postgres", "2025-01-01 10:00:00 UTC", "active",
                        "LOCK TABLE web_pages IN SHARE MODE")
    waiting = LockWaiting("web_pages", (holder,), 6.0)
    assert waiting.text() == ("web_pages: waiting for a lock on prod held by pid 4242 (application 'migrate', user "
                              "postgres, since 2025-01-01 10:00:00 UTC, active: 'LOCK TABLE web_pages IN SHARE MODE'); "
                              "giving up after 6 s (WEBSYNC_WAIT_S)")
    retry = Reconnecting("web_pages", "prod", "server closed the connection", 0, 1.0, 1, 3)
    assert retry.text() == ("web_pages: the link to prod broke (server closed the connection); prod rolled back the "
                            "unit in flight (0 rows committed before stay); reconnecting in 1 s (retry 1 of 3)")


class _ProdError(Exception):
    sqlstate = "23505"


def test_a_failure_reason_is_structured_from_the_error():
    cause = _ProdError("duplicate key value violates unique constraint")
    try:
        raise unit_failure("web_pages", cause, first_row=1, last_row=10, committed_rows=0) from cause
    except TableSyncError as exc:
        reason = failure_reason(exc, "web_pages")
    assert reason.kind == "prod" and reason.sqlstate == "23505"
    assert reason.message.startswith("load into prod failed: duplicate key value violates unique constraint")
    assert failure_reason(internal_error("web_files", KeyError("x")), "web_files").kind == "internal"
    assert failure_reason(TableSyncError("web_files", "gone"), "web_files") == FailureReason("table", "gone")
    other = failure_reason(SyncError("cannot connect to prod"), "web_files")
    assert other == FailureReason("error", "cannot connect to prod")
    assert failure_reason(ConfigError("bad URL"), "web_files").kind == "config"


def test_a_lock_watch_that_gives_up_is_a_lock_failure():
    watch = LockWatch("web_pages", 6, lambda: None, None)  # type: ignore[arg-type,return-value]
    reason = failure_reason(watch.gave_up(3), "web_pages")
    assert reason.kind == "lock"
    assert reason.message.startswith("waited 6 s (WEBSYNC_WAIT_S) for a lock on prod held by another session")


def test_a_table_exported_then_stopped_tells_both():
    export = ExportResult("web_files", "/x/web_files.csv", "delta", 12, 100, "0" * 64, ("id",), 20, 8, {}, 0.1)
    run = TableRun("web_files", export=export, error=NotLoaded("web_files", "not loaded: web_pages did not land"))
    assert outcome_events(run) == [
        TableExported("web_files", 12, "delta", "/x/web_files.csv"),
        TableFailed("web_files", FailureReason("blocked", "not loaded: web_pages did not land")),
    ]
    assert outcome_events(TableRun("web_files", export=export)) == [outcome_events(run)[0]]
