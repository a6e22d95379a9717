"""The code location ``websync_dagster.definitions:defs`` (what workspace.yaml, ``dagster`` and ``dg`` load).

The definitions are built when Dagster loads the location, not when this module is imported: the
tables, the cron and the sensor's interval come from the environment then. A bad value there does not
stop the location from loading (the UI, ``dagster definitions validate``): it is logged in one line and
the defaults are used; a run refuses the same value in one line before it starts.
"""

from __future__ import annotations

import logging

import dagster as dg

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import LocationOptions, load_location_options
from websync_dagster.defs.definitions import build_definitions

logger = logging.getLogger("websync")


def location_options() -> LocationOptions:
    try:
        return load_location_options()
    except ConfigError as exc:
        logger.warning("websync: %s; the code location uses the defaults until it is fixed", exc)
        return LocationOptions()


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(location_options())
