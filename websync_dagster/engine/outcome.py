"""The events that tell how a table's turn in a sync ended (``run_tables`` sends them before it yields the
table's ``TableRun``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from websync_dagster.core.redact import Redactor
from websync_dagster.engine.events import (
    Event,
    TableExported,
    TableFailed,
    TableLanded,
    TableReexported,
    TableWarning,
)
from websync_dagster.engine.failure import failure_reason

if TYPE_CHECKING:
    from websync_dagster.engine.table_run import TableRun


def outcome_events(run: TableRun, redact: Redactor | None = None) -> list[Event]:
    """A table exported and not loaded (only exported, or its load failed): ``TableExported``, then its
    ``TableFailed`` if it failed. A loaded one: the re-export note (if any), the plan's warnings, then
    ``TableLanded``."""
    told: list[Event] = []
    if run.load is None:
        if run.export is not None:
            told.append(TableExported(run.table, run.export.rows, run.export.scope, run.export.path))
        if run.error is not None:
            told.append(TableFailed(run.table, failure_reason(run.error, run.table, redact)))
        return told
    outcome, result = run.load, run.load.result
    if run.reexported:
        told.append(TableReexported(run.table, outcome.export.path))
    told.extend(TableWarning(run.table, warning) for warning in outcome.plan.warnings)
    told.append(TableLanded(run.table, outcome.export.rows, result.before, result.after, result.inserted,
                            result.already_present, result.skipped_total, result.rejected, result.mode,
                            result.seconds))
    return told
