"""``dev_prod_diff_sensor``: the dev-vs-prod diff on a timer, as asset observations and a tick message."""


import os

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from websync_dagster.jobs import websync_job
from websync_dagster.operations import diff_observations
from websync_dagster.pipeline import run_diff
from websync_dagster.resources import WebsyncResource
from websync_dagster.sync.errors import SyncError

DIFF_INTERVAL_S = int(os.environ.get("WEBSYNC_DIFF_INTERVAL_S", "600"))


@sensor(
    name="dev_prod_diff_sensor",
    job=websync_job,
    minimum_interval_seconds=DIFF_INTERVAL_S,
    default_status=DefaultSensorStatus.STOPPED,
    description="Compares dev and prod per table and records the drift on each <table>/prod_upserted.",
)
def dev_prod_diff_sensor(context: SensorEvaluationContext, websync: WebsyncResource) -> SensorResult | SkipReason:
    try:
        settings = websync.settings()
        diffs = run_diff(settings)
    except SyncError as exc:
        message = str(exc)
        context.log.warning(f"diff skipped: {message}")
        return SkipReason(f"cannot compute the diff: {message}")
    summary = "; ".join(
        f"{d.table}: {d.missing_in_prod} missing in prod, {d.only_in_prod} only in prod" for d in diffs
    )
    context.log.info(summary)
    return SensorResult(asset_events=diff_observations(diffs), skip_reason=summary, cursor=summary)
