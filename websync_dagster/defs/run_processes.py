"""Which process runs a websync run, and the runs whose process is gone: each ``websync`` run is tagged with its
host, pid and the pid's start (``run_tags``), so that a run left in progress by a process that died (killed,
machine crash) is found, marked failed and its concurrency slots freed (``fail_dead_runs``,
``free_slots_of_ended_runs``); a run whose process is alive is what a wait for a pool waits for (``RunInProgress``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunRecord, RunsFilter

from websync_dagster.core.processes import pid_alive, process_start

HOST_TAG, PID_TAG, PID_START_TAG = "websync/host", "websync/pid", "websync/pid_start"
IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def run_tags() -> dict[str, str]:
    """Tags naming the process that runs a websync run."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: process_start(pid) or ""}


def _process_alive(pid: int, started: str) -> bool:
    """Alive, and the same process that started the run (not a new one that reuses its pid)."""
    if not pid_alive(pid):
        return False
    now = process_start(pid)
    return not started or now is None or now == started


@dataclass(frozen=True)
class RunInProgress:
    run: DagsterRun
    started: float | None

    @property
    def key(self) -> str:
        return self.run.run_id

    @property
    def pid(self) -> int | None:
        text = self.run.tags.get(PID_TAG, "")
        return int(text) if text.isdigit() else None

    @property
    def local(self) -> bool:
        """Started by websync on this host: whether its process lives can be checked."""
        return self.pid is not None and self.run.tags.get(HOST_TAG) == socket.gethostname()

    @property
    def dead(self) -> bool:
        return self.local and self.pid is not None and not _process_alive(
            self.pid, self.run.tags.get(PID_START_TAG, ""))

    @property
    def hint(self) -> str:
        # websync can tell only its own runs on this host dead; any other run the user can end in the UI
        return "" if self.local else "; if it is dead, terminate it in the Dagster UI"

    def who(self) -> str:
        if self.pid is None:
            return "not started by websync"
        return f"pid {self.pid}" if self.local else f"pid {self.pid} on {self.run.tags.get(HOST_TAG)}"

    def name(self) -> str:
        return f"run {self.run.run_id}"

    def describe(self, *, with_start: bool = False) -> str:
        when = f", started {datetime.fromtimestamp(self.started):%H:%M}" if with_start and self.started else ""
        return f"run {self.run.run_id} ({self.who()}{when})"


def runs_in_progress(instance: DagsterInstance) -> list[RunInProgress]:
    records: Sequence[RunRecord] = instance.get_run_records(RunsFilter(statuses=IN_PROGRESS))
    return [RunInProgress(r.dagster_run, r.start_time or r.create_timestamp.timestamp()) for r in records]


def pools_held(instance: DagsterInstance, run_id: str) -> list[str]:
    """The pools where the run holds a slot or has a step queued (a queued step can be handed a slot)."""
    storage = instance.event_log_storage
    held = []
    for key in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(key)
        if run_id in info.active_run_ids or any(step.run_id == run_id for step in info.pending_steps):
            held.append(key)
    return held


def fail_dead_runs(instance: DagsterInstance, say: Callable[[str], None]) -> list[RunInProgress]:
    """Runs left in progress by a websync process that is gone: marked failed, their slots freed. Returns the runs
    in progress that are alive."""
    in_progress = runs_in_progress(instance)
    for entry in in_progress:
        if not entry.dead:
            continue
        pools = pools_held(instance, entry.run.run_id)
        instance.report_run_failed(entry.run, message=f"websync: the process running it ({entry.who()}) is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(entry.run.run_id)
        freed = f" and its {'/'.join(pools)} slot freed" if pools else ""
        say(f"{entry.describe()} died without finishing; marked failed{freed}")
    return [e for e in in_progress if not e.dead]


def free_slots_of_ended_runs(instance: DagsterInstance, running: set[str], say: Callable[[str], None]) -> None:
    """Slots still held by runs that are over, and slots claimed for a run that was never created (the websync
    process that claimed them died before creating it): freed. Called only by a process that holds the pools'
    flocks: a websync process claims slots only while it holds them, so no live process's claim is taken for
    a dead one's."""
    for run_id in instance.event_log_storage.get_concurrency_run_ids() - running:
        run = instance.get_run_by_id(run_id)  # read again: it may have started since
        if run is None:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            say(f"a concurrency slot was claimed for run {run_id}, which was never created (the websync process "
                "that claimed it is gone); freed")
        elif run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            say(f"run {run_id} is over but still held a concurrency slot; freed")

