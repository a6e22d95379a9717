"""The steps' messages wired into the job the CLI runs: without ``--debug``, Dagster's console logger is
replaced by one that hands each message (an engine event, or a line) to the CLI's ``MessageView``."""

from __future__ import annotations

import logging

from dagster import Field, InitLoggerContext, JobDefinition, LoggerDefinition, logger

from websync_dagster.cli.terminal import MessageView
from websync_dagster.defs.log_events import event_of
from websync_dagster.engine.events import TableFailed


class _MessagesOnly(logging.Handler):
    """What the steps say (progress, warnings) goes to the view, one message each; Dagster's own events (step
    started, failed with its stack trace...) are left out: the CLI prints its own line per failure."""

    def __init__(self, view: MessageView) -> None:
        super().__init__()
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        if meta.get("dagster_event") is not None:
            return
        event = event_of(record)
        if isinstance(event, TableFailed):  # the CLI prints each failure once the run is over, one per cause
            return
        if event is not None:
            self.view.show(event)
            return
        text = meta.get("orig_message", record.getMessage())
        if record.levelno >= logging.WARNING:
            self.view.line(f"websync: {record.levelname.lower()}: {text}")
        else:
            self.view.message(text)


def messages_logger(view: MessageView) -> LoggerDefinition:
    """The steps' messages only, shown by ``view`` (websync's CLI without --debug)."""

    @logger(config_schema={"log_level": Field(str, is_required=False, default_value="INFO")},
            description="The step's messages only, one line each (websync's CLI without --debug).")
    def websync_messages(init_context: InitLoggerContext) -> logging.Logger:
        log = logging.Logger("websync", level=init_context.logger_config["log_level"])
        log.addHandler(_MessagesOnly(view))
        return log

    return websync_messages


def job_for_cli(job: JobDefinition, debug: bool, view: MessageView) -> JobDefinition:
    """The job as the CLI runs it: Dagster's console log with --debug, otherwise the steps' messages only."""
    if debug:
        return job
    loggers: dict[str, LoggerDefinition] = {"console": messages_logger(view)}
    return job.with_logger_defs(loggers)
