"""The four modes as jobs: ``websync_job`` and ``export_job`` over the synced tables' assets, and the
read-only ``status_job`` and ``diff_job``, each built by a function (see ``build_read_only_jobs``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from dagster import (
    AssetSelection,
    JobDefinition,
    define_asset_job,
    in_process_executor,
    job,
)

from websync_dagster.defs.assets import REINDEX_KEY, export_key, prod_key
from websync_dagster.defs.ops import dev_prod_diff, prod_status

#: what ``define_asset_job`` returns (its class is not part of Dagster's public API)
AssetJob: TypeAlias = Any


@dataclass(frozen=True)
class AssetJobs:
    websync_job: AssetJob
    export_job: AssetJob


def build_asset_jobs(tables: Sequence[str]) -> AssetJobs:
    """``websync_job`` (export + insert-only load of ``tables``, then the reindex request) and ``export_job``."""
    sync = AssetSelection.assets(*[k for t in tables for k in (export_key(t), prod_key(t))], REINDEX_KEY)
    return AssetJobs(
        websync_job=define_asset_job(
            "websync_job", selection=sync, executor_def=in_process_executor,
            description="Export from dev the rows prod lacks, then insert them into prod, in FK order (insert-only, "
                        "unless WEBSYNC_UPDATE_NEWER opts a table in to newer-wins updates).",
        ),
        export_job=define_asset_job(
            "export_job", selection=AssetSelection.assets(*[export_key(t) for t in tables]),
            executor_def=in_process_executor, config={"ops": {"sync_to_prod": {"config": {"scope": "all"}}}},
            description="Offline export of every row of every table to CSV; needs no prod access.",
        ),
    )


def build_read_only_jobs() -> tuple[JobDefinition, ...]:
    """``status_job`` and ``diff_job``, built here rather than at module level: ``load_from_defs_folder`` takes
    every job a module of the defs folder holds, and the definitions module assembles these itself."""

    @job(executor_def=in_process_executor, description="Prod's row counts and crawl sources.")
    def status_job() -> None:
        prod_status()

    @job(executor_def=in_process_executor,
         description="Dev vs prod per table: counts, missing in prod, only in prod.")
    def diff_job() -> None:
        dev_prod_diff()

    return status_job, diff_job
