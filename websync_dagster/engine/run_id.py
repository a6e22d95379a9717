"""Run ids: the name part every file of a run carries, so that two runs never share a file."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from websync_dagster.core.errors import ConfigError

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def new_run_id() -> str:
    """A run id for a sync started outside Dagster: the UTC time, then random hex."""
    return f"{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:12]}"


def checked_run_id(run_id: str | None) -> str:
    """The run id that names every file the run writes (a new one when None); refused unless it is a
    plain file-name part, so that no run id can point a file outside the export dir."""
    if run_id is None:
        return new_run_id()
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"run id {run_id!r} cannot name a file: use letters, digits, '_', '-' and '.'")
    return run_id
