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
    from websync_dagster.engine.run import TableRun


def outcome_events(run: TableRun, redact: Redactor | None = None) -> list[Event]:
    """A failed table: its ``TableFailed``. A loaded one: the re-export note (if any), the plan's warnings,
    then ``TableLanded``. A table only exported: ``TableExported``."""
    if run.error is not None:
        return [TableFailed(run.table, failure_reason(run.error, run.table, redact))]
    if run.load is None:
        export = run.export
        return [] if export is None else [TableExported(run.table, export.rows, export.scope, export.path)]
    outcome, result = run.load, run.load.result
    told: list[Event] = [TableReexported(run.table, outcome.export.path)] if run.reexported else []
    told.extend(TableWarning(run.table, warning) for warning in outcome.plan.warnings)
    told.append(TableLanded(run.table, outcome.export.rows, result.before, result.after, result.inserted,
                            result.already_present, result.skipped_total, result.rejected, result.mode,
                            result.seconds))
    return told
