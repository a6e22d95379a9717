"""The code location: every asset, job, schedule, sensor and resource, assembled in one place."""

from __future__ import annotations

from dagster import Definitions

from websync_dagster.assets import sync_to_prod
from websync_dagster.jobs import diff_job, export_job, status_job, websync_job, websync_nightly
from websync_dagster.resources import WebsyncResource
from websync_dagster.sensors import dev_prod_diff_sensor

defs = Definitions(
    assets=[sync_to_prod],
    jobs=[websync_job, export_job, status_job, diff_job],
    schedules=[websync_nightly],
    sensors=[dev_prod_diff_sensor],
    resources={"websync": WebsyncResource()},
)
