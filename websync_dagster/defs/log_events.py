"""The engine's events into Dagster's log: each one's line is what the run's log records, and the typed event
rides on the log record (``extra``) so that a logger of the same process (the CLI's display, which runs the
job in process) reads the event itself, never the line."""

from __future__ import annotations

import logging

from websync_dagster.engine.events import Event, EventSink

#: the log record's attribute that holds the event (Dagster hands a record's ``extra`` on to each @logger)
EVENT_ATTR = "websync_event"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def to_log(log: logging.Logger) -> EventSink:
    """A sink that logs each event on ``log`` (a step's ``context.log``) at the event's level."""

    def tell(event: Event) -> None:
        log.log(_LEVELS[event.level], event.text(), extra={EVENT_ATTR: event})

    return tell


def event_of(record: logging.LogRecord) -> Event | None:
    """The event a record logged by ``to_log`` carries; None for any other record."""
    return getattr(record, EVENT_ATTR, None)
