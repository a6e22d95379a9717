"""Prod side: insert-only load of an export file, in commit units (see engine/units.py), each one
transaction under the table's advisory lock.

Two ways for each unit, same outcome:
- fast path: ``COPY`` straight into the table. It succeeds when the unit clashes with nothing, which
  is the common case; any refusal rolls that transaction back and the staged path runs instead.
- staged path: ``COPY`` into a text staging table, cast each row into a probe table that carries
  prod's types and CHECK constraints (rows prod refuses are rejected with the reason, one by one,
  only if the set-based cast fails), drop rows that clash on a unique key (also prod's expression and
  partial unique indexes, and within the batch on those), null (or reject) references prod cannot
  satisfy, then ``INSERT ... ON CONFLICT DO NOTHING`` of the whole unit in one statement. If prod
  refuses a row there (a trigger, an index limit...), the batch is split in two and each half tried
  again, down to the single rows prod refuses, which are rejected with prod's message.

Nothing in prod is ever updated or deleted: the only statement touching the table is an INSERT (or
the COPY of the fast path).

The modules: this one, the two entry points (a finished export file, one being written); units_loop.py,
the commit units and each one's path; steps.py, the table's lock and counts and the fast path's steps;
staged.py, the staged path's steps and counts; clashes.py, its unique-key, expression-index and
foreign-key passes; blocks.py and sql/, its two PL/pgSQL programs; temp_tables.py, the names they share;
refusals.py, which errors are a row's; rejects.py, the reject file; result.py, the table's figures.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from websync_dagster.core.errors import TableSyncError
from websync_dagster.engine.events import EventSink
from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.failure import unit_failure
from websync_dagster.engine.follow import FollowedFile
from websync_dagster.engine.load.clashes import ALREADY_PRESENT
from websync_dagster.engine.load.refusals import ROW_REFUSALS, refused_by_a_row
from websync_dagster.engine.load.rejects import RejectFile
from websync_dagster.engine.load.result import NOTHING_TO_SHIP, LoadResult
from websync_dagster.engine.load.steps import advisory_lock, count_rows
from websync_dagster.engine.load.units_loop import load_units, unit_seconds
from websync_dagster.engine.lock_wait import LockWatch
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.progress import DEFAULT_EVERY_S, Progress
from websync_dagster.engine.run_files import RunFiles
from websync_dagster.transport.base import ProdSession

__all__ = [
    "ALREADY_PRESENT",
    "NOTHING_TO_SHIP",
    "REJECT_ROWS_WITH_CONTENT",
    "ROW_REFUSALS",
    "LoadResult",
    "advisory_lock",
    "count_rows",
    "file_chunks",
    "load_export",
    "load_followed",
    "read_header",
    "refused_by_a_row",
    "unit_seconds",
]

CHUNK = 1 << 20
#: rejected rows of a table whose content is written to the reject file; beyond that (a prod refusing
#: every row of a large delta), id and reason only, so that a unit's rejects never fill the memory; the
#: file and the metadata say how many rows' content was left out
REJECT_ROWS_WITH_CONTENT = 20_000


def file_chunks(path: Path) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    return read


def read_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return f.readline().rstrip("\r\n").split(",")


@dataclass(frozen=True)
class _TableLoad:
    """What both entry points do alike: a table's load into prod through ``session``."""

    session: ProdSession
    plan: TablePlan
    reject_dir: Path
    stamp: str
    commit_every_s: float | None
    report: EventSink | None
    watch: LockWatch | None
    progress_every_s: float
    files: RunFiles | None

    def progress(self, *, total_bytes: int, total_rows: int, estimated: bool = False) -> Progress:
        return Progress(self.plan.table, "load", self.report, total_bytes=total_bytes, total_rows=total_rows,
                        estimated=estimated, every_s=self.progress_every_s)

    def send(self, chunks: Iterator[bytes], fd: int, result: LoadResult) -> None:
        """Load the file unit by unit (see units_loop.py) into ``result``; ``fd`` is closed here."""
        rejects = RejectFile(self.reject_dir, self.plan.table, self.stamp, with_content=REJECT_ROWS_WITH_CONTENT)
        load_units(self.session, self.plan, chunks, fd, result, rejects, commit_every_s=self.commit_every_s,
                   watch=self.watch, files=self.files)


def load_export(
    session: ProdSession,
    plan: TablePlan,
    export_file: Path,
    *,
    rows: int,
    reject_dir: Path,
    stamp: str,
    already_in_prod: int = 0,
    prod_rows: int | None = None,
    commit_every_s: float | None = None,
    report: EventSink | None = None,
    watch: LockWatch | None = None,
    progress_every_s: float = DEFAULT_EVERY_S,
    files: RunFiles | None = None,
) -> LoadResult:
    """Insert the rows of ``export_file`` (CSV with header, columns ``plan.shipped``) into prod, in
    commit units of ``commit_every_s`` seconds of sending (None: one transaction). ``prod_rows``: prod's rows
    as the export's delta counted them (``ExportResult.prod_rows``), told when nothing is shipped."""
    started = time.perf_counter()
    header = [c.strip('"') for c in read_header(export_file)]
    if header != list(plan.shipped):
        raise TableSyncError(plan.table, f"export {export_file} has columns {header}, expected {list(plan.shipped)}")
    size = export_file.stat().st_size
    load = _TableLoad(session, plan, reject_dir, stamp, commit_every_s, report, watch, progress_every_s, files)
    result = LoadResult(table=plan.table)
    chunks = load.progress(total_bytes=size, total_rows=rows).wrap(file_chunks(export_file)())
    fd = os.open(export_file, os.O_RDONLY)
    with _rolled_back_on_error(plan.table, result):
        load.send(chunks, fd, result)
        _count_untouched(session, plan, result, prod_rows)
    _settle(result, rows, already_in_prod, accounted_before=0, inserted_before=0, size=size, started=started)
    return result


def load_followed(
    session: ProdSession,
    plan: TablePlan,
    followed: FollowedFile,
    finish_export: Callable[[], ExportResult],
    *,
    reject_dir: Path,
    stamp: str,
    commit_every_s: float | None = None,
    into: LoadResult | None = None,
    report: EventSink | None = None,
    watch: LockWatch | None = None,
    progress_every_s: float = DEFAULT_EVERY_S,
    files: RunFiles | None = None,
) -> LoadResult:
    """Insert into prod the export that another thread is writing, as it is written, in commit units.

    Each unit is a COPY straight into the table (or, when prod refuses a row of it or the transport
    cannot, the staged path on the same rows) committed on its own, after ``commit_every_s`` seconds
    of sending. An export that fails aborts the unit in flight, which rolls back; units committed
    before hold whole rows of dev's snapshot, and the next run ships the rest. ``finish_export``
    waits for the export and returns its result, or raises its error. ``into``: the result of an
    earlier attempt of the same table that committed some units (the figures add up).
    """
    started = time.perf_counter()
    load = _TableLoad(session, plan, reject_dir, stamp, commit_every_s, report, watch, progress_every_s, files)
    result = into if into is not None else LoadResult(table=plan.table)
    accounted_before, inserted_before = result.accounted, result.inserted
    with _rolled_back_on_error(plan.table, result):
        if not followed.wait_opened():  # the export reads prod's keys through this session until then
            finish_export()
        progress = load.progress(total_bytes=followed.estimated_bytes, total_rows=followed.estimated_rows,
                                 estimated=True)
        chunks, fd = progress.wrap(followed.chunks()), followed.descriptor()
        try:
            load.send(chunks, fd, result)
        except Exception:
            if followed.failed:  # the export's error is the one to report, not the COPY it aborted
                finish_export()
            raise  # the load's own: the caller stops the export
        export = finish_export()
        _count_untouched(session, plan, result, export.prod_rows)
    _settle(result, export.rows, export.already_in_prod, accounted_before=accounted_before,
            inserted_before=inserted_before, size=export.bytes, started=started)
    return result


def _count_untouched(session: ProdSession, plan: TablePlan, result: LoadResult, prod_rows: int | None) -> None:
    """Prod's rows before and after, the same, for a table no unit committed to: the count the export's delta read
    from prod's id digests this run (``prod_rows``), or prod's count now. Over a VPS link that is one round trip
    less for each table with nothing to ship."""
    if result.commits == 0:
        result.before = result.after = (prod_rows if prod_rows is not None
                                        else session.query(count_rows(plan.table).query)[0]["n"])


def _settle(result: LoadResult, rows: int, already_in_prod: int, *, accounted_before: int,
            inserted_before: int, size: int, started: float) -> None:
    """The table's figures once its export (``rows``, ``size`` bytes) is loaded whole. An earlier attempt's
    committed rows are in this export's ``already_in_prod`` (prod has their ids now): counted as shipped,
    not as present; its seconds add up with this one's, from ``started``."""
    result.shipped = accounted_before + rows
    result.already_present += already_in_prod - inserted_before
    result.lost = result.shipped - result.accounted
    result.bytes = size if rows else 0
    result.seconds = round(result.seconds + time.perf_counter() - started, 3)


@contextlib.contextmanager
def _rolled_back_on_error(table: str, result: LoadResult) -> Iterator[None]:
    """Any error but the engine's own becomes one line naming the table and what the committed units kept
    (the unit in flight is rolled back); the error stays the cause."""
    try:
        yield
    except TableSyncError:
        raise
    except Exception as exc:
        raise unit_failure(table, exc, first_row=result.sent + 1, last_row=None,
                           committed_rows=result.inserted) from exc
