"""The modes as plain functions: what the Dagster assets, ops and sensor call.

``run_tables`` syncs tables in FK order (a table whose declared dependencies did not land is not loaded;
each table's problem is its own; an interruption stops the run); ``run_status`` and ``run_diff`` read.
One table's export or load is engine/export_load.py's, its turn in a sync engine/table_run.py's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from websync_dagster.core.errors import SyncError, TableSyncError
from websync_dagster.core.settings import Settings
from websync_dagster.engine.context import SyncContext, context_for
from websync_dagster.engine.diff import diff_table
from websync_dagster.engine.diff_cache import DiffCache
from websync_dagster.engine.events import EventSink, TableStarted
from websync_dagster.engine.failure import internal_error
from websync_dagster.engine.outcome import outcome_events
from websync_dagster.engine.run_id import checked_run_id
from websync_dagster.engine.status import prod_counts, web_sources_detail
from websync_dagster.engine.table_diff import TableDiff
from websync_dagster.engine.table_run import TableRun, run_table
from websync_dagster.engine.update.candidates import find_newer
from websync_dagster.engine.version_split import split_versions
from websync_dagster.transport.direct import PsycopgSession


def run_tables(
    ctx: SyncContext,
    *,
    export: Sequence[str],
    load: Sequence[str],
    scope: str = "delta",
    declared_deps: Mapping[str, Sequence[str]],
    run_id: str | None = None,
    report: EventSink | None = None,
) -> Iterator[TableRun]:
    """Export and/or load tables in FK order, one ``TableRun`` each, as each finishes.

    A table loaded (delta) is streamed: the load follows the export file as it is written. A table
    loaded without being exported is exported again first: an export recorded earlier may predate
    prod's current state, and the counts must be prod's. A table that cannot be planned, or whose
    declared dependencies did not land, is not loaded (its error says why); the others are. Every
    file the run writes has ``run_id`` in its name (Dagster's run id; None: a new one).
    """
    run_id = checked_run_id(run_id)
    if load:
        ctx.run_files(run_id).start()
    not_landed: list[str] = []
    for table in [t for t in ctx.settings.tables if t in export or t in load]:
        run = TableRun(table)
        blocked = [d for d in declared_deps.get(table, ()) if d in not_landed and d in load]
        if report is not None:
            report(TableStarted(table, export=table in export, load=table in load))
        try:
            run_table(ctx, run, exported=table in export, loaded=table in load, scope=scope,
                      declared_deps=declared_deps, blocked=blocked, run_id=run_id, report=report)
        except SyncError as exc:
            run.error = exc
        except GeneratorExit:
            raise
        except Exception as exc:  # a bug met by this table: said as one, and the other tables still run
            run.error = internal_error(table, exc, ctx.settings.redactor())
            run.error.__cause__ = exc
        except BaseException as exc:
            # Ctrl-C or SIGTERM (KeyboardInterrupt, or Dagster's interruption): say which table and what prod
            # kept of it, and stop the run
            said = (f"interrupted; the unit in flight was rolled back, {run.committed} rows committed before stay; "
                    "the next run ships only what prod lacks") if table in load else "interrupted during its export"
            raise TableSyncError(table, said) from exc
        if table in load and not run.landed:
            not_landed.append(table)
        if report is not None:
            for event in outcome_events(run, ctx.settings.redactor()):
                report(event)
        yield run


def run_status(target: Settings | SyncContext) -> tuple[dict[str, int], list[dict[str, object]]]:
    with context_for(target) as ctx:
        return prod_counts(ctx.prod, ctx.settings.tables), web_sources_detail(ctx.prod)


def run_diff(target: Settings | SyncContext, cache_dir: Path | None = None) -> list[TableDiff]:
    """``cache_dir``: where each side's per-bucket figures are kept between calls, so that the next diff hashes
    again only the rows of buckets that changed (see sync/diff_cache.py); None hashes every row."""
    cache = DiffCache(cache_dir) if cache_dir is not None else None
    with context_for(target) as ctx:
        dev_session = PsycopgSession(ctx.dev)
        diffs = []
        for plan in ctx.plans().values():
            diff = diff_table(dev_session, ctx.prod, plan, cache)
            if plan.version is not None:  # a table opted in to newer-wins updates: its changed rows by version
                split = split_versions(dev_session, ctx.prod, plan, find_newer(ctx.dev, ctx.prod, plan))
                diff = diff.with_versions(plan.version, split.newer_in_dev, split.newer_in_prod, split.version_only,
                                          version_compared=split.version_compared)
            diffs.append(diff)
        return diffs
