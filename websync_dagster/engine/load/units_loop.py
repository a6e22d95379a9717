"""The unit loop: a table's export cut into commit units (engine/units.py), each one transaction under the
table's advisory lock, by the fast path or, when prod refuses a row of it (or the transport cannot retry
a COPY), the staged path on the same rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from websync_dagster.core.errors import TableSyncError, first_line
from websync_dagster.engine.failure import unit_failure
from websync_dagster.engine.follow import ExportAborted
from websync_dagster.engine.load.refusals import refused_by_a_row
from websync_dagster.engine.load.rejects import RejectFile
from websync_dagster.engine.load.result import LoadResult
from websync_dagster.engine.load.staged import StagedCounts, staged_steps
from websync_dagster.engine.load.steps import fast_path_steps
from websync_dagster.engine.lock_wait import LockWatch
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.run_files import RunFiles, new_unit_id
from websync_dagster.engine.units import Unit, UnitCutter
from websync_dagster.transport.base import BeforeCommit, ProdSession


def unit_seconds(plan: TablePlan, commit_every_s: float | None) -> float | None:
    """How long a commit unit of the table sends before it commits; None (one unit for the whole table)
    when the table references itself: a row may reference one further down the file, which must be
    in the same transaction for prod to accept the reference (or for it to be kept)."""
    if any(fk.ref_table == plan.table for fk in plan.prod.foreign_keys):
        return None
    return commit_every_s


def load_units(session: ProdSession, plan: TablePlan, chunks: Iterator[bytes], fd: int, result: LoadResult,
               rejects: RejectFile, *, commit_every_s: float | None, watch: LockWatch | None,
               files: RunFiles | None = None) -> None:
    """Send and commit the file unit by unit; ``result`` holds the figures of the units committed so far.
    ``chunks``: the export file's bytes from its start, as they are written; ``fd``: an open descriptor of
    it (closed here), to send a unit again. ``watch`` names what a unit waits for in prod (see
    engine/lock_wait.py). ``files``: the run's manifest, which gets each committed unit's inserted rows."""
    cutter = UnitCutter(chunks, fd, unit_seconds(plan, commit_every_s))
    with contextlib.closing(cutter):
        while cutter.has_rows():
            unit = cutter.next_unit()
            first = result.commits == 0
            waiting = watch.watching(session.application_name, result.inserted) if watch else contextlib.nullcontext()
            noted, keep = _noted(session, plan.table, files, result.sent + 1)
            try:
                with waiting:
                    landed = session.supports_fast_path and _fast_unit(session, plan, unit, result, first, keep)
                    if landed is False:
                        landed = _staged_unit(session, plan, unit, result, rejects, first, keep)
            except BaseException as exc:
                if files is not None and noted is not None and _rolled_back(session, exc):
                    files.rolled_back(plan.table, noted)
                if isinstance(exc, (TableSyncError, ExportAborted)) or not isinstance(exc, Exception):
                    raise
                raise unit_failure(plan.table, exc, first_row=result.sent + 1,
                                   last_row=cutter.last_row(unit, result.sent), committed_rows=result.inserted) from exc
            result.commits += 1
            if files is not None and noted is not None:
                if keep is not None:
                    files.committed(plan.table, noted)
                else:
                    files.record(plan.table, "inserted", landed, unit=noted)
                result.manifest_file = files.manifest_file()


def _noted(session: ProdSession, table: str, files: RunFiles | None, first_row: int
           ) -> tuple[str | None, BeforeCommit | None]:
    """A unit's id in the run's manifest and, where the session holds a transaction open, what writes its rows
    there before its COMMIT is sent (run_files.py); else the unit is noted ``sending`` now, its rows written once
    prod answered."""
    if files is None:
        return None, None
    if not session.holds_commit:
        return files.sending(table, "inserted", export_row=first_row), None
    unit = new_unit_id()
    return unit, lambda results: files.committing(table, unit, {"inserted": results.rows("landed")})


def _rolled_back(session: ProdSession, exc: BaseException) -> bool:
    """Whether prod is known to have rolled the unit back: it answered with an error, or the unit stopped before
    its COMMIT was sent (the export ended it). A link lost, or an interrupt, while the COMMIT may be on its way
    leaves that unknown."""
    if isinstance(exc, ExportAborted):
        return True
    return isinstance(exc, Exception) and not session.connection_lost(exc)


def _staged_unit(session: ProdSession, plan: TablePlan, unit: Unit, result: LoadResult, rejects: RejectFile,
                 first: bool, keep: BeforeCommit | None) -> list[dict[str, Any]]:
    """The staged path for one unit, adding the server's counts to ``result``; the rows it inserted."""
    results = session.run_transaction(staged_steps(plan, unit.source, count_before=first,
                                                   with_content=rejects.content_budget), keep)
    counts = StagedCounts.read(results, counted_before=first)
    result.add_staged(counts)
    rejects.add(counts.refused)
    result.add_reject_file(rejects)
    return counts.landed


def _fast_unit(session: ProdSession, plan: TablePlan, unit: Unit, result: LoadResult, first: bool,
               keep: BeforeCommit | None) -> list[dict[str, Any]] | bool:
    """COPY one unit straight into the table and return the rows it inserted; on refusal record why, leave the
    table as it was, read the unit to its end (the staged path sends it again) and return False."""
    try:
        results = session.run_transaction(fast_path_steps(plan, unit.source, count_before=first), keep)
    except psycopg.Error as exc:
        if not refused_by_a_row(exc):
            raise
        result.fallback_reason = result.fallback_reason or first_line(exc)
        unit.read_to_end()
        return False
    result.add_copied(before=results.value("before", "n") if first else None, after=results.value("after", "n"),
                      copied=results.value("copied", "rows"))
    return results.rows("landed")
