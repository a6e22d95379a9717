"""The four modes as jobs, and the nightly schedule."""

from __future__ import annotations

import os

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
    job,
)

from websync_dagster.assets import REINDEX_KEY, export_key, prod_key
from websync_dagster.operations import dev_prod_diff, prod_status
from websync_dagster.sync.tables import parse_tables

#: tables in the sync job: WEBSYNC_TABLES when set (read when the code location loads)
SYNCED_TABLES = parse_tables(os.environ.get("WEBSYNC_TABLES"))

websync_job = define_asset_job(
    "websync_job",
    selection=AssetSelection.assets(*[k for t in SYNCED_TABLES for k in (export_key(t), prod_key(t))], REINDEX_KEY),
    executor_def=in_process_executor,
    description="Export from dev the rows prod lacks, then insert them into prod (insert-only), in FK order.",
)

export_job = define_asset_job(
    "export_job",
    selection=AssetSelection.assets(*[export_key(t) for t in SYNCED_TABLES]),
    executor_def=in_process_executor,
    config={"ops": {"sync_to_prod": {"config": {"scope": "all"}}}},
    description="Offline export of every row of every table to CSV; needs no prod access.",
)


@job(executor_def=in_process_executor, description="Prod's row counts and crawl sources.")
def status_job() -> None:
    prod_status()


@job(executor_def=in_process_executor, description="Dev vs prod per table: counts, missing in prod, only in prod.")
def diff_job() -> None:
    dev_prod_diff()


websync_nightly = ScheduleDefinition(
    name="websync_nightly",
    job=websync_job,
    cron_schedule=os.environ.get("WEBSYNC_NIGHTLY_CRON", "0 3 * * *"),
    default_status=DefaultScheduleStatus.STOPPED,
    description="Nightly sync (stopped until turned on in the UI).",
)
