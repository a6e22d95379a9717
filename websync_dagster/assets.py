"""Per table: ``<table>/export`` (dev -> CSV) and ``<table>/prod_upserted`` (insert-only load into prod).

The prod assets depend on the prod assets of the tables they reference, so the lineage graph is the
foreign-key order; the load checks that order against prod's real foreign keys before writing.
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    Config,
    MaterializeResult,
    Output,
    asset,
)
from pydantic import Field

from websync_dagster import metadata
from websync_dagster.failures import as_failure
from websync_dagster.pipeline import run_export, run_load
from websync_dagster.reindex import request_reindex
from websync_dagster.resources import WebsyncResource
from websync_dagster.sync.export import ExportResult
from websync_dagster.sync.tables import DEFAULT_TABLES

GROUP = "websync"
#: which prod loads each prod load waits for (the lineage); checked against prod's foreign keys
DECLARED_DEPS: dict[str, tuple[str, ...]] = {
    "web_sources": (),
    "knowledge_base": (),
    "web_pages": ("web_sources", "knowledge_base"),
    "web_files": ("web_sources", "knowledge_base", "web_pages"),
}
NO_REJECTS_CHECK = "no_rejected_rows"
LANDED_CHECK = "all_shipped_rows_in_prod"
DEV_COLUMNS_CHECK = "no_dev_column_left_behind"


def export_key(table: str) -> AssetKey:
    return AssetKey([table, "export"])


def prod_key(table: str) -> AssetKey:
    return AssetKey([table, "prod_upserted"])


class ExportConfig(Config):
    scope: str = Field(
        default="delta", description="delta: only the rows prod lacks (reads prod's keys); all: every row, dev only"
    )


def table_assets(table: str) -> list[AssetsDefinition]:
    @asset(
        key=export_key(table),
        group_name=GROUP,
        kinds={"postgres", "csv"},
        description=f"{table} exported from dev with COPY to a Postgres CSV file under WEBSYNC_EXPORT_DIR.",
    )
    def export(context: AssetExecutionContext, config: ExportConfig, websync: WebsyncResource) -> Output[dict]:
        with as_failure(websync, table):
            result = run_export(websync.sync_context(), table, scope=config.scope, report=context.log.info)
        context.log.info(f"{table}: exported {result.rows} rows ({result.scope}) to {result.path}")
        return Output(result.to_dict(), metadata=metadata.export_metadata(result))

    @asset(
        key=prod_key(table),
        group_name=GROUP,
        kinds={"postgres"},
        ins={"export": AssetIn(key=export_key(table))},
        deps=[prod_key(t) for t in DECLARED_DEPS[table]],
        check_specs=[
            AssetCheckSpec(LANDED_CHECK, asset=prod_key(table), blocking=True,
                           description="every row shipped is now in prod, or was rejected with a reason"),
            AssetCheckSpec(NO_REJECTS_CHECK, asset=prod_key(table),
                           description="warns when prod refused rows (they are in the reject file)"),
            AssetCheckSpec(DEV_COLUMNS_CHECK, asset=prod_key(table),
                           description="warns when dev columns are left behind (prod has no such column)"),
        ],
        pool="prod_sync",
        description=f"Rows of {table} that prod lacked, inserted into prod (insert-only, one transaction).",
    )
    def prod_upserted(
        context: AssetExecutionContext, websync: WebsyncResource, export: dict
    ) -> Iterator[MaterializeResult]:
        with as_failure(websync, table):
            ctx = websync.sync_context()
            outcome = run_load(ctx, table, ExportResult.from_dict(export), declared_deps=DECLARED_DEPS,
                               report=context.log.info)
        result = outcome.result
        context.log.info(
            f"{table}: prod {result.before} -> {result.after} rows, {result.inserted} inserted, "
            f"{result.already_present} already present, {result.skipped_total} skipped, {result.rejected} rejected"
        )
        yield MaterializeResult(
            metadata=metadata.load_metadata(outcome, ctx.transport.describe()),
            check_results=[
                metadata.landed_check(outcome, LANDED_CHECK),
                metadata.rejects_check(outcome, NO_REJECTS_CHECK),
                metadata.dev_columns_check(outcome, DEV_COLUMNS_CHECK),
            ],
        )

    return [export, prod_upserted]


REINDEX_KEY = AssetKey(["prod", "reindex_requested"])


@asset(
    key=REINDEX_KEY,
    group_name=GROUP,
    kinds={"http"},
    deps=[prod_key("knowledge_base"), prod_key("web_pages")],
    description="Asks prod to re-index (WEBSYNC_REINDEX_URL/METHOD/TOKEN), from the VPS over SSH or directly.",
)
def reindex_requested(context: AssetExecutionContext, websync: WebsyncResource) -> MaterializeResult:
    with as_failure(websync):
        result = request_reindex(websync.settings())
    if result is None:
        reminder = ("reindex not configured (WEBSYNC_REINDEX_URL unset): prod will index the new documents "
                    "only when its own cron runs")
        context.log.warning(reminder)
        return MaterializeResult(metadata={"requested": False, "reminder": reminder})
    context.log.info(f"reindex {result.method} {result.url} from {result.sent_from}: HTTP {result.status}")
    return MaterializeResult(metadata={
        "requested": True, "http_status": result.status, "url": result.url, "method": result.method,
        "sent_from": result.sent_from, "seconds": result.seconds,
    })


def all_table_assets() -> list[AssetsDefinition]:
    return [a for table in DEFAULT_TABLES for a in table_assets(table)]
