"""The CLI's display and failure report from the engine's typed events and the step failure's structured
problems: nothing reads an English line back (fast layer: no server; Dagster runs in process)."""

import io

from dagster import OpExecutionContext, job, op

from websync_dagster.cli.display import job_for_cli
from websync_dagster.cli.results import error_rows, failures, one_line_per_cause, problems
from websync_dagster.cli.terminal import MessageView
from websync_dagster.defs.failures import failure
from websync_dagster.defs.log_events import to_log
from websync_dagster.engine.events import Event, FailureReason, Note, TableFailed, TableWarning, TransferProgress


class _Unreadable(TransferProgress):
    """A progress event whose line must not be needed to draw its bar."""

    def text(self) -> str:
        raise AssertionError("the display read the progress line")


def test_a_bar_is_drawn_from_a_transfer_event_without_its_text():
    stream = io.StringIO()
    view = MessageView(stream, live=True)
    view.show(_Unreadable("web_pages", "load", 2_000_000, 8_000_000, 100, True, 1.0))
    view.show(_Unreadable("web_pages", "load", 6_000_000, 8_000_000, 100, True, 2.0))
    assert view._bars is not None
    [task] = view._bars.tasks
    assert (task.description, task.completed, task.total) == ("web_pages load", 6_000_000, 8_000_000)
    view.show(_Unreadable("web_files", "export", 1_000, 0, 0, True, 1.0))  # no total known: a bar without one
    assert [t.total for t in view._bars.tasks] == [8_000_000, None]
    view.close()
    assert "websync: web_pages load" not in stream.getvalue()


def test_without_a_terminal_each_event_is_its_line():
    stream = io.StringIO()
    view = MessageView(stream, live=False)
    view.show(TransferProgress("web_pages", "export", 1_500_000, 0, 0, True, 0.5))
    view.show(TableWarning("knowledge_base", "override of chunk_count skipped: prod has no such column"))
    view.show(Note("reindex not configured"))
    view.message("prod status: web_pages 3 rows")
    assert stream.getvalue().splitlines() == [
        "websync: web_pages export: 1.5 MB, 3.0 MB/s",
        "websync: warning: knowledge_base: override of chunk_count skipped: prod has no such column",
        "websync: reindex not configured",
        "websync: prod status: web_pages 3 rows",
    ]


class _Recording(MessageView):
    def __init__(self) -> None:
        super().__init__(io.StringIO(), live=False)
        self.events: list[Event] = []

    def show(self, event: Event) -> None:
        self.events.append(event)
        super().show(event)


PROGRESS = TransferProgress("web_pages", "load", 1_000_000, 2_000_000, 10, True, 1.0)
LOST = FailureReason("prod", "load into prod failed: could not extend file (SQLSTATE 53100)", "53100")
PROBLEMS = [
    {"table": "web_pages", "kind": "error", "error": "cannot reach prod: connection refused", "sqlstate": None},
    {"table": "web_files", "kind": "blocked", "error": "not loaded: web_pages did not land in prod", "sqlstate": None},
    {"table": "knowledge_base", "kind": "error", "error": "cannot reach prod: connection refused", "sqlstate": None},
    {"table": None, "kind": "error", "error": "reindex failed: HTTP 500", "sqlstate": None},
]


@op
def _tells(context: OpExecutionContext) -> None:
    tell = to_log(context.log)
    tell(PROGRESS)
    tell(TableFailed("web_pages", LOST))
    tell(TableWarning("web_pages", "a warning"))
    context.log.info("a plain message")
    raise failure(PROBLEMS)


@job
def _telling() -> None:
    _tells()


def test_the_cli_logger_gets_the_engines_event_objects_through_dagster():
    """Dagster hands a record's ``extra`` on to the run's @loggers: the CLI's display gets the very event the
    step logged, a table's failure is left to the report after the run, and the report comes from the step
    failure's metadata."""
    view = _Recording()
    result = job_for_cli(_telling, False, view).execute_in_process(
        raise_on_error=False, run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}})
    assert not result.success
    assert view.events[0] is PROGRESS
    assert [type(e) for e in view.events] == [TransferProgress, TableWarning]  # TableFailed: not shown live
    assert view.stream.getvalue().splitlines() == [
        "websync: web_pages load: 1.0 of ~2.0 MB (~5 of ~10 rows), 1.0 MB/s",
        "websync: warning: web_pages: a warning",
        "websync: a plain message",
    ]
    assert problems(result) == PROBLEMS
    assert failures(result) == ["web_pages: cannot reach prod: connection refused",
                                "web_files: not loaded: web_pages did not land in prod",
                                "knowledge_base: cannot reach prod: connection refused",
                                "reindex failed: HTTP 500"]


def test_the_failure_report_groups_tables_by_cause_from_structured_problems():
    assert one_line_per_cause(PROBLEMS) == [
        "web_pages, knowledge_base: cannot reach prod: connection refused",
        "web_files: not loaded: web_pages did not land in prod",
        "reindex failed: HTTP 500",
    ]
    assert error_rows(PROBLEMS, {"web_files"}) == [
        {"table": "web_pages", "error": "cannot reach prod: connection refused"},
        {"table": "knowledge_base", "error": "cannot reach prod: connection refused"},
    ]
    # an error that itself holds ": " is never split into a table and a cause
    tricky = [{"table": None, "error": "web_pages: said by no table", "kind": "error", "sqlstate": None}]
    assert one_line_per_cause(tricky) == ["web_pages: said by no table"] and error_rows(tricky, set()) == []
