"""Per table: ``<table>/export`` (dev -> CSV) and ``<table>/prod_upserted`` (insert-only load into prod, with the
newer-wins updates of a table opted in by WEBSYNC_UPDATE_NEWER),
then ``prod/reindex_requested``.

The prod assets depend on the prod assets of the tables they reference, so the lineage graph is the
foreign-key order; the load checks that order against prod's real foreign keys before writing.

All of them are one subsettable multi-asset, ``sync_to_prod``: one step per run, so that a run opens one
connection to each side and Dagster's fixed cost per step is paid once, and so that each table's load
can follow its export file as it is written. Materialising any subset still works: a load selected
without its export exports the rows prod lacks again first (an export recorded earlier may predate
prod's current state), so that its metadata is what prod holds now.

Every file a run writes has the Dagster run id in its name.
"""

from collections.abc import Iterator
from datetime import timedelta

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    FreshnessPolicy,
    MaterializeResult,
    multi_asset,
)
from pydantic import Field

from websync_dagster.core.errors import SyncError
from websync_dagster.core.tables import DECLARED_DEPS, DEFAULT_TABLES, REINDEXED_TABLES
from websync_dagster.defs import metadata
from websync_dagster.defs.failures import Problem, as_failure, failure, first_cause, problem
from websync_dagster.defs.log_events import to_log
from websync_dagster.defs.resources import WebsyncResource
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.reindex import request_reindex
from websync_dagster.engine.run import run_tables
from websync_dagster.engine.table_run import TableRun

REINDEX_GROUP = "prod"
NO_REJECTS_CHECK = "no_rejected_rows"
LANDED_CHECK = "all_shipped_rows_in_prod"
DEV_COLUMNS_CHECK = "no_dev_column_left_behind"
REINDEX_KEY = AssetKey(["prod", "reindex_requested"])


def export_key(table: str) -> AssetKey:
    return AssetKey([table, "export"])


def prod_key(table: str) -> AssetKey:
    return AssetKey([table, "prod_upserted"])


class ExportConfig(Config):
    scope: str = Field(
        default="delta", description="delta: only the rows prod lacks (reads prod's keys); all: every row, dev only"
    )


def _table_specs(table: str, freshness: FreshnessPolicy | None) -> list[AssetSpec]:
    """The table's two assets, in a group named after the table so that the lineage graph says which
    table each ``export`` and ``prod_upserted`` belongs to."""
    return [
        AssetSpec(export_key(table), group_name=table, kinds={"postgres", "csv"},
                  description=f"{table} exported from dev with COPY to a Postgres CSV file under WEBSYNC_EXPORT_DIR."),
        AssetSpec(prod_key(table), group_name=table, kinds={"postgres"},
                  deps=[export_key(table), *(prod_key(t) for t in DECLARED_DEPS[table])],
                  freshness_policy=freshness,
                  description=f"Rows of {table} that prod lacked, inserted into prod, in commit units: a failure rolls "
                              "back the unit in flight, the units committed before stay. Insert-only unless "
                              "WEBSYNC_UPDATE_NEWER opts the table in: then the rows dev holds newer are updated "
                              "too, their before-images kept for undo_job."),
    ]


def _check_specs(table: str) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(LANDED_CHECK, asset=prod_key(table), blocking=True,
                       description="every row shipped is now in prod, or was rejected with a reason"),
        AssetCheckSpec(NO_REJECTS_CHECK, asset=prod_key(table),
                       description="warns when prod refused rows (they are in the reject file)"),
        AssetCheckSpec(DEV_COLUMNS_CHECK, asset=prod_key(table),
                       description="warns when dev columns are left behind (prod has no such column)"),
    ]


def _reindex_spec() -> AssetSpec:
    """Built by ``build_sync_assets`` (not a module constant: ``load_from_defs_folder`` would take a module's
    spec for an asset of its own)."""
    return AssetSpec(
        REINDEX_KEY, group_name=REINDEX_GROUP, kinds={"http"}, deps=[prod_key(t) for t in REINDEXED_TABLES],
        description="Asks prod to re-index (WEBSYNC_REINDEX_URL/METHOD/TOKEN), from the VPS over SSH or directly.",
    )


def freshness_policy(warn_after_h: float, fail_after_h: float) -> FreshnessPolicy:
    """Each prod load is expected every night: a night that did not sync shows in the UI as WARN, then FAIL."""
    return FreshnessPolicy.time_window(fail_window=timedelta(hours=fail_after_h),
                                       warn_window=timedelta(hours=warn_after_h))


def build_sync_assets(freshness: FreshnessPolicy | None = None) -> AssetsDefinition:
    """``sync_to_prod``: every table's export and prod load, and the reindex request, as one multi-asset."""

    @multi_asset(
        name="sync_to_prod",
        specs=[*(spec for table in DEFAULT_TABLES for spec in _table_specs(table, freshness)), _reindex_spec()],
        check_specs=[spec for table in DEFAULT_TABLES for spec in _check_specs(table)],
        can_subset=True,
        pool="prod_sync",
        description="Per table in FK order: export from dev the rows prod lacks and insert them into prod, the load "
        "following the export file as it is written; then ask prod to re-index.",
    )
    def sync_to_prod(
        context: AssetExecutionContext, config: ExportConfig, websync: WebsyncResource
    ) -> Iterator[MaterializeResult]:
        yield from _sync(context, config, websync)

    return sync_to_prod


def _sync(
    context: AssetExecutionContext, config: ExportConfig, websync: WebsyncResource
) -> Iterator[MaterializeResult]:
    selected = context.selected_asset_keys
    exports = [t for t in DEFAULT_TABLES if export_key(t) in selected]
    loads = [t for t in DEFAULT_TABLES if prod_key(t) in selected]
    failed: list[Problem] = []
    errors: list[BaseException] = []
    with as_failure(websync):
        ctx = websync.sync_context()
        runs = run_tables(ctx, export=exports, load=loads, scope=config.scope, declared_deps=DECLARED_DEPS,
                          run_id=context.run_id, report=to_log(context.log))
        for run in runs:
            yield from _table_results(context, run, ctx)
            if run.error is not None:
                failed.append(problem(websync, run.error, run.table))
                errors.append(run.error)
            elif run.load is not None and not run.landed:
                check = metadata.landed_check(run.load, prod_key(run.table), LANDED_CHECK, run.update)
                failed.append({"table": run.table, "kind": "not_landed", "sqlstate": None,
                               "error": f"{check.description} (check {LANDED_CHECK} failed)"})
    if REINDEX_KEY in selected and not failed:
        try:
            yield _reindex(context, websync)
        except SyncError as exc:
            failed.append(problem(websync, exc))
            errors.append(exc)
    if failed:
        raise failure(failed) from first_cause(errors)


def _table_results(context: AssetExecutionContext, run: TableRun, ctx: SyncContext) -> Iterator[MaterializeResult]:
    table, export = run.table, run.export
    if export is not None and export_key(table) in context.selected_asset_keys:
        yield MaterializeResult(asset_key=export_key(table), metadata=metadata.export_metadata(export))
    if run.load is None:  # its events (engine/outcome.py) are in the log already
        return
    outcome, key = run.load, prod_key(table)
    same_version = metadata.last_diff_same_version(context.instance, key) if run.update is not None else None
    yield MaterializeResult(
        asset_key=key,
        metadata=metadata.load_metadata(outcome, ctx.transport.describe(), reexported=run.reexported,
                                         update=run.update, same_version=same_version),
        check_results=[
            metadata.landed_check(outcome, key, LANDED_CHECK, run.update),
            metadata.rejects_check(outcome, key, NO_REJECTS_CHECK),
            metadata.dev_columns_check(outcome, key, DEV_COLUMNS_CHECK),
        ],
    )


def _reindex(context: AssetExecutionContext, websync: WebsyncResource) -> MaterializeResult:
    result = request_reindex(websync.settings())
    if result is None:
        reminder = ("reindex not configured (WEBSYNC_REINDEX_URL unset): prod will index the new documents "
                    "only when its own cron runs")
        context.log.info(reminder)
        return MaterializeResult(asset_key=REINDEX_KEY, metadata={"requested": False, "reminder": reminder})
    context.log.info(f"reindex {result.method} {result.url} from {result.sent_from}: HTTP {result.status}")
    return MaterializeResult(asset_key=REINDEX_KEY, metadata={
        "requested": True, "http_status": result.status, "url": result.url, "method": result.method,
        "sent_from": result.sent_from, "seconds": result.seconds,
    })
