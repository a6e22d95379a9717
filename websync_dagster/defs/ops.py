"""Ops of the read-only modes: prod status and the dev-vs-prod diff, recorded as asset observations."""

from collections.abc import Iterator
from pathlib import Path

from dagster import AssetObservation, DagsterInstance, MetadataValue, OpExecutionContext, Out, Output, op

from websync_dagster.core.report import markdown_table
from websync_dagster.defs.assets import prod_key
from websync_dagster.defs.failures import as_failure
from websync_dagster.defs.resources import WebsyncResource
from websync_dagster.engine.run import run_diff, run_status
from websync_dagster.engine.table_diff import TableDiff

DIFF_COLUMNS = ("table", "dev_rows", "prod_rows", "missing_in_prod", "only_in_prod", "changed")
#: the changed rows by version, and the rows that differ only in it: columns of the table when a table is opted in to
#: newer-wins updates (empty for the others)
VERSION_COLUMNS = ("newer_in_dev", "newer_in_prod", "same_version_differs", "version_only")


def diff_rows(diffs: list[TableDiff]) -> list[dict[str, int | str | None]]:
    """The diff table, the same for diff_job, `websync diff` and the sensor."""
    columns = DIFF_COLUMNS + (VERSION_COLUMNS if any(d.newer_in_dev is not None for d in diffs) else ())
    return [{c: d.to_dict()[c] for c in columns} for d in diffs]


def diff_observations(diffs: list[TableDiff]) -> list[AssetObservation]:
    return [
        AssetObservation(
            asset_key=prod_key(d.table),
            metadata={
                "dev_rows": d.dev_rows,
                "prod_rows": d.prod_rows,
                "missing_in_prod": d.missing_in_prod,
                "only_in_prod": d.only_in_prod,
                "changed": d.changed,
                **({"newer_in_dev": d.newer_in_dev, "newer_in_prod": d.newer_in_prod,
                    "same_version_differs": d.same_version_differs, "version_only": d.version_only}
                   if d.newer_in_dev is not None else {}),
                "diff_queries_per_side": d.queries,
                "diff_ids_compared": d.ids_compared,
                "diff": MetadataValue.md(markdown_table(diff_rows([d]))),
            },
        )
        for d in diffs
    ]


def diff_cache_dir(instance: DagsterInstance) -> Path:
    """Where the diff keeps each side's per-bucket figures between runs and ticks: ``<instance dir>/websync/
    diff-cache`` (``$DAGSTER_HOME`` for a persistent instance). Deleting it only makes the next diff hash
    every row."""
    return Path(instance.root_directory) / "websync" / "diff-cache"


@op(out={"result": Out(dict, description="prod row counts per table"),
         "web_sources": Out(list, description="prod's crawl sources, with the columns its web_sources has")})
def prod_status(context: OpExecutionContext, websync: WebsyncResource) -> Iterator[Output]:
    """Row counts of every synced table in prod, and prod's crawl sources (each column under its own name:
    the runbook's url, status, last_crawled_at or the reference schema's base_url, health_status, last_crawl_at)."""
    with as_failure(websync):
        counts, sources = run_status(websync.sync_context())
    for table, n in counts.items():
        context.log_event(AssetObservation(asset_key=prod_key(table), metadata={"prod_rows": n}))
    counts_md = markdown_table([{"table": t, "prod_rows": n} for t, n in counts.items()])
    sources_md = markdown_table(sources)
    context.log.info("prod status: " + ", ".join(f"{t} {n} rows" for t, n in counts.items())
                     + f"; {len(sources)} web sources (listed in this step's metadata)")
    yield Output(
        counts,
        output_name="result",
        metadata={
            "counts": MetadataValue.md(counts_md),
            "web_sources": MetadataValue.md(sources_md),
            **{f"{t}_rows": n for t, n in counts.items()},
        },
    )
    yield Output(sources, output_name="web_sources")


@op(out=Out(list, description="dev vs prod per table"))
def dev_prod_diff(context: OpExecutionContext, websync: WebsyncResource) -> Output[list]:
    """Per table: dev count, prod count, rows missing in prod, rows only in prod."""
    with as_failure(websync):
        diffs = run_diff(websync.sync_context(), cache_dir=diff_cache_dir(context.instance))
    for observation in diff_observations(diffs):
        context.log_event(observation)
    table_md = markdown_table(diff_rows(diffs))
    context.log.info("; ".join(d.summary() for d in diffs))
    return Output(diff_rows(diffs), metadata={"diff": MetadataValue.md(table_md)})
