"""Every asset, job, schedule, sensor and resource of the code location, assembled in one place."""

from __future__ import annotations

from dagster import Definitions

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import LocationOptions, Settings
from websync_dagster.defs.assets import build_sync_assets, freshness_policy
from websync_dagster.defs.jobs import build_asset_jobs, build_read_only_jobs
from websync_dagster.defs.resources import WebsyncResource
from websync_dagster.defs.schedules import build_nightly_schedule
from websync_dagster.defs.sensors import build_diff_sensor


def build_definitions(options: LocationOptions, settings: Settings | ConfigError) -> Definitions:
    """The code location's definitions with ``options``; its resource runs with ``settings`` (or, when they could
    not be loaded, fails every step that needs them with the ConfigError's line)."""
    jobs = build_asset_jobs(options.tables)
    return Definitions(
        assets=[build_sync_assets(freshness_policy(options.freshness_warn_h, options.freshness_fail_h))],
        jobs=[jobs.websync_job, jobs.export_job, *build_read_only_jobs()],
        schedules=[build_nightly_schedule(jobs.websync_job, options.nightly_cron)],
        sensors=[build_diff_sensor(jobs.websync_job, options.diff_interval_s)],
        resources={"websync": WebsyncResource.from_settings(settings)},
    )
