"""``dev_prod_diff_sensor``: the dev-vs-prod diff on a timer, as asset observations and a tick message.

Each tick re-reads whole rows only in id buckets that changed since the previous tick (the figures of
the others are kept under ``diff_cache_dir``), so a tick with nothing changed reads the tables' heaps, not
their large TOASTed texts.

With ``WEBSYNC_DIFF_AUTO_SYNC=1`` it also requests a ``websync_job`` run when rows are missing in prod;
the run key is derived from the drift itself, so the same drift never launches two runs.
"""

import hashlib
import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from websync_dagster.core.errors import SyncError
from websync_dagster.defs.jobs import AssetJob
from websync_dagster.defs.ops import diff_cache_dir, diff_observations
from websync_dagster.defs.resources import WebsyncResource
from websync_dagster.engine.run import run_diff
from websync_dagster.engine.table_diff import TableDiff


def drift_key(diffs: list[TableDiff]) -> str:
    figures = [(d.table, d.dev_rows, d.prod_rows, d.missing_in_prod, d.newer_in_dev) for d in diffs]
    return hashlib.sha256(json.dumps(figures).encode()).hexdigest()[:16]


def build_diff_sensor(websync_job: AssetJob, interval_s: int) -> SensorDefinition:
    """``dev_prod_diff_sensor``, ticking every ``interval_s`` seconds (WEBSYNC_DIFF_INTERVAL_S)."""

    @sensor(
        name="dev_prod_diff_sensor",
        job=websync_job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.STOPPED,
        description="Compares dev and prod per table (checksum bisection) and records the drift on each "
        "<table>/prod_upserted; with WEBSYNC_DIFF_AUTO_SYNC=1, launches websync_job when rows are missing in prod "
        "(or newer in dev, in a table opted in to newer-wins updates).",
    )
    def dev_prod_diff_sensor(context: SensorEvaluationContext, websync: WebsyncResource) -> SensorResult:
        return evaluate_diff(context, websync)

    return dev_prod_diff_sensor


def evaluate_diff(context: SensorEvaluationContext, websync: WebsyncResource) -> SensorResult:
    """One tick: the diff as observations and a message; a run request when auto-sync is on and rows are missing in
    prod, or newer in dev in a table opted in to newer-wins updates (WEBSYNC_UPDATE_NEWER)."""
    try:
        settings = websync.settings()
        diffs = run_diff(settings, cache_dir=diff_cache_dir(context.instance))
    except SyncError as exc:
        message = f"cannot compute the dev/prod diff: {exc}"
        context.log.warning(message)
        return SensorResult(skip_reason=message, cursor=context.cursor)
    summary = "; ".join(d.summary() for d in diffs)
    context.log.info(summary)
    key = drift_key(diffs)
    cursor = json.dumps({"drift": key, "figures": [d.to_dict() for d in diffs]})
    missing = sum(d.missing_in_prod + (d.newer_in_dev or 0) for d in diffs)
    if settings.diff_auto_sync and missing:
        return SensorResult(
            run_requests=[RunRequest(run_key=f"drift-{key}", tags={"websync/trigger": "dev_prod_diff_sensor"})],
            asset_events=diff_observations(diffs),
            cursor=cursor,
        )
    return SensorResult(asset_events=diff_observations(diffs), skip_reason=summary, cursor=cursor)
