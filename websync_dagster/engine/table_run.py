"""One table's turn in a sync (``TableRun``, ``run_table``): its export, its load following the file, and
the retries of the same table after the link to prod (or dev) was lost."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from websync_dagster.core.errors import SyncError
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.events import EventSink, Reconnecting
from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.export_load import (
    REJECT_SUBDIR,
    LoadOutcome,
    account,
    checked_plan,
    run_export,
    run_load,
)
from websync_dagster.engine.export_thread import ExportThread
from websync_dagster.engine.failure import ExportFailed, NotLoaded, link_reason
from websync_dagster.engine.load import LoadResult, load_followed
from websync_dagster.engine.run_files import RunFiles
from websync_dagster.engine.update.run import run_update
from websync_dagster.engine.update.units import UpdateResult

#: a table whose link to prod breaks is retried this many times in the same run, after 1, 2, 4 s
RECONNECT_ATTEMPTS = 3
RECONNECT_PAUSE_S = 1.0


@dataclass
class TableRun:
    """What one table's turn in a sync produced: its export, its load, or the error that stopped it."""

    table: str
    export: ExportResult | None = None
    load: LoadOutcome | None = None
    error: SyncError | None = None
    #: loaded without its export selected: the delta was exported again, so that the counts are prod's now
    reexported: bool = False
    #: rows the table's committed units inserted (if it stopped midway: what stays in prod)
    committed: int = 0
    #: what the newer-wins update path did (a table opted in by WEBSYNC_UPDATE_NEWER, once its inserts landed)
    update: UpdateResult | None = None

    @property
    def landed(self) -> bool:
        """Loaded, with every shipped row accounted for by the server's counts, and every row to update updated,
        refused or left as prod changed it (a table opted in to newer-wins updates)."""
        return self.load is not None and self.load.result.lost == 0 and (self.update is None or self.update.lost == 0)


def run_table(
    ctx: SyncContext, run: TableRun, *, exported: bool, loaded: bool, scope: str,
    declared_deps: Mapping[str, Sequence[str]], blocked: Sequence[str], run_id: str, report: EventSink | None,
) -> None:
    """One table's turn in ``run_tables``; fills ``run`` or raises the error that stops the table."""
    table = run.table
    if loaded and blocked:
        if exported:
            run.export = run_export(ctx, table, scope=scope, run_id=run_id, report=report)
        raise NotLoaded(table, f"not loaded: {', '.join(blocked)} did not land in prod")
    if loaded and (scope == "delta" or not exported):
        run.reexported = not exported
        _export_and_load_reconnecting(ctx, run, declared_deps, run_id, report)
        if run.load is not None and run.load.plan.version is not None:
            run.update = UpdateResult(table=table, version=run.load.plan.version)
            run_update(ctx, run.load.plan, run.update, run_id, report)
            run.load.result.manifest_file = ctx.run_files(run_id).manifest_file()
    elif exported:
        run.export = run_export(ctx, table, scope=scope, run_id=run_id, report=report)
        if loaded:  # a full export: refused with the reason
            run.load = run_load(ctx, table, run.export, declared_deps=declared_deps, run_id=run_id, report=report)


def _export_and_load_reconnecting(
    ctx: SyncContext, run: TableRun, declared_deps: Mapping[str, Sequence[str]], run_id: str,
    report: EventSink | None,
) -> None:
    """``_export_and_load``; when the link to prod breaks mid-table (SSH cut, prod restarted, backend
    terminated), prod rolls back the commit unit in flight and the same run reconnects, after a pause
    that doubles each time, and ships the table's delta again, which is what prod lacks now: the units
    committed before the cut stay, nothing is lost or duplicated. Each retry is one line; after
    ``RECONNECT_ATTEMPTS`` the table fails as before."""
    reconnecting = False
    loaded = LoadResult(table=run.table)  # what the attempts committed
    for attempt in range(RECONNECT_ATTEMPTS + 1):
        try:
            _export_and_load(ctx, run, declared_deps, run_id if attempt == 0 else f"{run_id}.{attempt}", report,
                             loaded, ctx.run_files(run_id))
            return
        except SyncError as exc:
            failed_to_reopen = reconnecting and not ctx.prod_open  # prod still restarting, the link still down
            lost = ctx.prod_lost(exc) or failed_to_reopen
            if attempt == RECONNECT_ATTEMPTS or not lost:
                if lost:
                    ctx.reconnect()  # the tables after this one try a new session, not the broken one
                raise
            reconnecting = True
            pause = RECONNECT_PAUSE_S * 2 ** attempt
            if report is not None:
                reason = link_reason(exc, ctx.settings.redactor())
                side = "dev" if isinstance(exc, ExportFailed) else "prod"  # dev's backend ended, dev restarted
                report(Reconnecting(run.table, side, reason, loaded.inserted, pause, attempt + 1, RECONNECT_ATTEMPTS))
            ctx.reconnect()
            loaded.keep_only_inserted()
            time.sleep(pause)


def _export_and_load(
    ctx: SyncContext, run: TableRun, declared_deps: Mapping[str, Sequence[str]], run_id: str,
    report: EventSink | None, loaded: LoadResult, files: RunFiles,
) -> None:
    """The delta export in a thread and the load following its file: the overlap of a raw COPY pipe.
    Each commit unit commits once its rows are sent (see engine/units.py); ``loaded`` holds what
    earlier attempts committed and gets this one's units. ``run.export`` is set even if the load fails."""
    plan = checked_plan(ctx, run.table, declared_deps)
    prod = ctx.prod  # opened here: the export thread then only borrows it to read prod's keys
    sent_before = ctx.transport.wire_bytes_sent()
    exporter = ExportThread(ctx, run.table, run_id, report)
    try:
        result = load_followed(prod, plan, exporter.followed, exporter.finish,
                               reject_dir=ctx.settings.export_dir / REJECT_SUBDIR, stamp=run_id,
                               commit_every_s=ctx.settings.commit_every_s, into=loaded, report=report,
                               watch=ctx.lock_watch(run.table, report),
                               progress_every_s=ctx.settings.progress_every_s, files=files)
    finally:
        run.committed = loaded.inserted
        exporter.stop()  # the load stopped before the end of the file: the export ends with it
        run.export = exporter.result
        exporter.followed.close()
    assert run.export is not None
    account(ctx, result, run.export, sent_before)
    run.load = LoadOutcome(plan, result, run.export)
