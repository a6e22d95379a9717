"""The code location ``websync_dagster.definitions:defs`` (what workspace.yaml, ``dagster`` and ``dg`` load).

The definitions are built when Dagster loads the location, not when this module is imported: the options (tables,
cron, the sensor's interval) and the run's settings are loaded from the environment and ``.env`` then, once, and
handed to the resource (nothing reads the environment later: change it, then reload the location; a run launched
from the UI loads the location in its own process). A bad value does not stop the location from loading (the UI,
``dagster definitions validate``): a bad option is logged in one line and the defaults are used; bad settings fail
every step that needs them with their one line, before it does anything.
"""

from __future__ import annotations

import logging

import dagster as dg

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import LocationOptions, Settings, load_location_options, load_settings
from websync_dagster.defs.definitions import build_definitions

logger = logging.getLogger("websync")


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
    return build_definitions(location_options(), run_settings())
