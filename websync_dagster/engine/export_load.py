"""One table's export, or the load of one export file: the export and load modes, and what a sync's
table run (engine/table_run.py) builds on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from websync_dagster.core.errors import SyncError, TableSyncError, first_line
from websync_dagster.core.settings import Settings
from websync_dagster.engine.catalog import read_catalog
from websync_dagster.engine.context import SyncContext, context_for
from websync_dagster.engine.delta import prod_keys
from websync_dagster.engine.events import EventSink
from websync_dagster.engine.export import ExportResult, export_path
from websync_dagster.engine.failure import ExportFailed, internal_error, is_bug
from websync_dagster.engine.follow import FollowedFile
from websync_dagster.engine.load import LoadResult, load_export
from websync_dagster.engine.order import check_declared_order
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.run_id import checked_run_id

REJECT_SUBDIR = "rejects"


def run_export(
    target: Settings | SyncContext, table: str, *, scope: str, run_id: str | None = None,
    report: EventSink | None = None, follow: FollowedFile | None = None,
) -> ExportResult:
    """``scope="delta"``: the rows prod lacks (needs prod); ``"all"``: every row and column, dev only.
    ``follow`` lets a load read the file while it is written (see ``run_tables``). The file is the
    run's own: ``run_id`` (a new one when None) is in its name and it is created exclusively."""
    if scope not in ("delta", "all"):
        raise SyncError(f"export scope must be 'delta' or 'all', not {scope!r}")
    with context_for(target) as ctx:
        path = export_path(ctx.settings.export_dir, table, checked_run_id(run_id))
        try:
            if scope == "all":
                dev_columns = read_catalog(ctx.dev_side.catalog(), [table], side="dev")[table].column_names
                return ctx.dev_side.export(table, dev_columns, path, report=report,
                                           progress_every_s=ctx.settings.progress_every_s)
            plan = ctx.plan(table)
            keys = prod_keys(ctx.prod, plan, ctx.planning().prod_digests)
            return ctx.dev_side.export(table, plan.shipped, path, prod_keys=keys, overrides=plan.overrides,
                                       report=report, follow=follow, progress_every_s=ctx.settings.progress_every_s)
        except SyncError:
            raise
        except Exception as exc:  # a connection lost mid-COPY, a full disk...: one line naming the table
            if is_bug(exc):
                raise internal_error(table, exc, ctx.settings.redactor()) from exc
            reason = ctx.settings.redactor()(first_line(exc))
            raise ExportFailed(table, f"export failed: {type(exc).__name__}: {reason}") from exc


@dataclass(frozen=True)
class LoadOutcome:
    """A load into prod: the table's plan, what the load did, and the export it loaded."""

    plan: TablePlan
    result: LoadResult
    export: ExportResult


def checked_plan(ctx: SyncContext, table: str, declared_deps: Mapping[str, Sequence[str]]) -> TablePlan:
    """The table's plan, once the declared load order is checked against prod's foreign keys (of every
    table prod could describe, planned or not)."""
    check_declared_order(declared_deps, ctx.planning().prod_catalog)
    return ctx.plan(table)


def account(ctx: SyncContext, result: LoadResult, export: ExportResult, sent_before: int | None) -> None:
    """Add what the export left out (other unique keys) and the bytes sent over the link."""
    for name, n in export.clashes.items():
        result.skipped[name] = result.skipped.get(name, 0) + n
    sent_after = ctx.transport.wire_bytes_sent()
    if sent_after is not None:
        result.wire_bytes = sent_after - (sent_before or 0)


def run_load(
    target: Settings | SyncContext,
    table: str,
    export: ExportResult,
    *,
    declared_deps: Mapping[str, Sequence[str]],
    run_id: str | None = None,
    report: EventSink | None = None,
) -> LoadOutcome:
    """Insert an export file into prod, after checking the declared load order against prod's foreign keys."""
    if export.scope != "delta":
        raise TableSyncError(table, f"{export.path} is a full export ({export.scope}); a sync loads only deltas")
    with context_for(target) as ctx:
        plan = checked_plan(ctx, table, declared_deps)
        if tuple(export.columns) != plan.shipped:
            raise TableSyncError(table, f"the schema changed since the export ({export.path}): export again")
        if not Path(export.path).is_file():
            raise TableSyncError(table, f"the export file {export.path} is gone: export {table} again")
        sent_before = ctx.transport.wire_bytes_sent()
        stamp = checked_run_id(run_id)
        result = load_export(
            ctx.prod,
            plan,
            Path(export.path),
            rows=export.rows,
            reject_dir=ctx.settings.export_dir / REJECT_SUBDIR,
            stamp=stamp,
            already_in_prod=export.already_in_prod,
            commit_every_s=ctx.settings.commit_every_s,
            report=report,
            watch=ctx.lock_watch(table, report),
            progress_every_s=ctx.settings.progress_every_s,
            files=ctx.run_files(stamp),
        )
        account(ctx, result, export, sent_before)
        return LoadOutcome(plan, result, export)
