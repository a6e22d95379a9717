"""The code location ``websync_dagster.definitions:defs`` (what workspace.yaml, ``dagster`` and ``dg`` load),
and the one place where its definitions are assembled (``build_definitions``, which the ``websync`` CLI uses too).

The definitions are built when Dagster loads the location, not when this module is imported: the options (tables,
cron, the sensor's interval) and the run's settings are loaded from the environment and ``.env`` then, once, and
handed to the resource (nothing reads the environment later: change it, then reload the location; a run launched
from the UI loads the location in its own process). A bad value does not stop the location from loading (the UI,
``dagster definitions validate``): a bad option is logged in one line and the defaults are used; bad settings fail
every step that needs them with their one line, before it does anything.

Whatever a user adds to the ``defs`` folder (``dg scaffold defs ...``, a module with an asset, a job or a
``Definitions``) is loaded with the rest (``dg.load_from_defs_folder``); websync's own modules there hold no
Dagster object at module level, so that they are not loaded twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import LocationOptions, Settings, load_location_options, load_settings
from websync_dagster.defs.assets import build_sync_assets, freshness_policy
from websync_dagster.defs.jobs import build_asset_jobs, build_read_only_jobs
from websync_dagster.defs.resources import WebsyncResource
from websync_dagster.defs.schedules import build_nightly_schedule
from websync_dagster.defs.sensors import build_diff_sensor
from websync_dagster.defs.undo import build_undo_job

logger = logging.getLogger("websync")


def build_definitions(options: LocationOptions, settings: Settings | ConfigError) -> dg.Definitions:
    """websync's assets, jobs, schedule, sensor and resource with ``options``; the resource runs with ``settings``
    (or, when they could not be loaded, fails every step that needs them with the ConfigError's line)."""
    jobs = build_asset_jobs(options.tables)
    return dg.Definitions(
        assets=[build_sync_assets(freshness_policy(options.freshness_warn_h, options.freshness_fail_h))],
        jobs=[jobs.websync_job, jobs.export_job, *build_read_only_jobs(), build_undo_job()],
        schedules=[build_nightly_schedule(jobs.websync_job, options.nightly_cron)],
        sensors=[build_diff_sensor(jobs.websync_job, options.diff_interval_s)],
        resources={"websync": WebsyncResource.from_settings(settings)},
    )


def location_options() -> LocationOptions:
    try:
        return load_location_options()
    except ConfigError as exc:
        logger.warning("websync: %s; the code location uses the defaults until it is fixed", exc)
        return LocationOptions()


def run_settings() -> Settings | ConfigError:
    """The settings of the location's runs (prod may be left unset: the export job needs none), or why not."""
    try:
        return load_settings(require_prod=False)
    except ConfigError as exc:
        return exc


@dg.definitions
def defs() -> dg.Definitions:
    """websync's definitions and those of the ``defs`` folder (``[tool.dg.project] defs_module``)."""
    added = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return dg.Definitions.merge(build_definitions(location_options(), run_settings()), added)
