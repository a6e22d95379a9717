"""The Dagster instance websync runs on: DAGSTER_HOME (default ./.dagster_home), with the project's
dagster.yaml, or dagster.postgres.yaml (dagster-postgres storage) when DAGSTER_PG_URL is set.

Also what keeps one run from blocking the next: each ``websync`` run is tagged with its host and pid, so
that a run whose process is gone (killed, machine crash) is found, marked failed and its concurrency
slots freed; a run that is alive is waited for, for a bounded time, saying which run it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunRecord, RunsFilter

from websync_dagster.core.processes import pid_alive

#: the instance settings websync writes into DAGSTER_HOME (shipped with the package)
INSTANCE_CONFIG = Path(__file__).resolve().parent / "instance_config"
DEFAULT_HOME = ".dagster_home"
MARKER = "websync"  # dagster.yaml files that mention it are ours to refresh; others are left alone
LOCK_FILE = ".websync.lock"
HOST_TAG, PID_TAG, PID_START_TAG = "websync/host", "websync/pid", "websync/pid_start"
IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
POLL_S = 1.0


def instance_yaml(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    name = "dagster.postgres.yaml" if env.get("DAGSTER_PG_URL") else "dagster.yaml"
    return (INSTANCE_CONFIG / name).read_text()


def storage_url(url: str) -> str:
    """dagster-postgres needs the psycopg2 driver (its NOTIFY statements use client-side parameters):
    a plain ``postgresql://`` URL is given the ``+psycopg2`` driver."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg2://" + url[len(plain):]
    return url


def prepare_dagster_home(home: str | Path | None = None) -> Path:
    """Create DAGSTER_HOME with websync's instance settings (unless the user wrote their own) and export it."""
    if os.environ.get("DAGSTER_PG_URL"):
        os.environ["DAGSTER_PG_URL"] = storage_url(os.environ["DAGSTER_PG_URL"])
    path = Path(home or os.environ.get("DAGSTER_HOME") or Path.cwd() / DEFAULT_HOME).absolute()
    path.mkdir(parents=True, exist_ok=True)
    with home_lock(path):
        _write_config(path)
    os.environ["DAGSTER_HOME"] = str(path)
    return path


def _write_config(path: Path) -> None:
    config = path / "dagster.yaml"
    text = instance_yaml()
    if config.exists() and (MARKER not in config.read_text() or config.read_text() == text):
        return
    partial = path / f".dagster.yaml.{os.getpid()}"
    partial.write_text(text)
    partial.replace(config)  # never a half-written file for another process to read


@contextlib.contextmanager
def home_lock(path: Path) -> Iterator[None]:
    """Serialises websync processes setting up the same DAGSTER_HOME: Dagster's SQLite storage creates
    its tables when first opened, and two processes doing it at once fail ('table runs already exists')."""
    with open(path / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_instance(home: str | Path | None = None) -> tuple[DagsterInstance, Path]:
    """DAGSTER_HOME prepared and its instance opened, its storage schemas created by one process at a time."""
    path = prepare_dagster_home(home)
    with home_lock(path):
        instance = DagsterInstance.get()
        instance.get_runs(limit=1)  # run storage, then the event log index (concurrency slots live there)
        instance.event_log_storage.get_concurrency_keys()
    return instance, path


def _process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot, from /proc), to tell it from a later process
    given the same pid; None where /proc is not readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def run_tags() -> dict[str, str]:
    """Tags naming the process that runs a websync run."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: _process_start(pid) or ""}


def _process_alive(pid: int, started: str) -> bool:
    """Alive, and the same process that started the run (not a new one that reuses its pid)."""
    if not pid_alive(pid):
        return False
    now = _process_start(pid)
    return not started or now is None or now == started


@dataclass(frozen=True)
class RunInProgress:
    run: DagsterRun
    started: float | None

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

    def who(self) -> str:
        if self.pid is None:
            return "not started by websync"
        return f"pid {self.pid}" if self.local else f"pid {self.pid} on {self.run.tags.get(HOST_TAG)}"

    def describe(self, *, with_start: bool = False) -> str:
        when = f", started {datetime.fromtimestamp(self.started):%H:%M}" if with_start and self.started else ""
        return f"run {self.run.run_id} ({self.who()}{when})"


class WaitTimeout(Exception):
    def __init__(self, holder: RunInProgress, pools: Sequence[str], wait_s: float) -> None:
        # websync can tell only its own runs on this host dead; any other run the user can end in the UI
        hint = "" if holder.local else "; if it is dead, terminate it in the Dagster UI"
        super().__init__(f"{holder.describe()} still holds the {'/'.join(pools)} slot after {wait_s:g} s "
                         f"(WEBSYNC_WAIT_S); nothing was run{hint}")


class WaitInterrupted(Exception):
    def __init__(self, holders: Sequence[RunInProgress]) -> None:
        names = ", ".join(f"run {h.run.run_id}" for h in holders) or "another run"
        super().__init__(f"interrupted while waiting for {names}; nothing was run")


def runs_in_progress(instance: DagsterInstance) -> list[RunInProgress]:
    records: Sequence[RunRecord] = instance.get_run_records(RunsFilter(statuses=IN_PROGRESS))
    return [RunInProgress(r.dagster_run, r.start_time or r.create_timestamp.timestamp()) for r in records]


def _pools_held(instance: DagsterInstance, run_id: str) -> list[str]:
    """The pools where the run holds a slot or has a step queued (a queued step can be handed a slot)."""
    storage = instance.event_log_storage
    held = []
    for key in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(key)
        if run_id in info.active_run_ids or any(step.run_id == run_id for step in info.pending_steps):
            held.append(key)
    return held


def fail_dead_runs(instance: DagsterInstance, say: Callable[[str], None]) -> None:
    """Runs left in progress by a websync process that is gone: marked failed, their slots freed; and
    slots still held by runs that are over."""
    in_progress = runs_in_progress(instance)
    for entry in in_progress:
        if not entry.dead:
            continue
        pools = _pools_held(instance, entry.run.run_id)
        instance.report_run_failed(entry.run, message=f"websync: the process running it ({entry.who()}) is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(entry.run.run_id)
        freed = f" and its {'/'.join(pools)} slot freed" if pools else ""
        say(f"{entry.describe()} died without finishing; marked failed{freed}")
    running = {e.run.run_id for e in in_progress if not e.dead}
    for run_id in instance.event_log_storage.get_concurrency_run_ids() - running:
        run = instance.get_run_by_id(run_id)  # read again: it may have started since
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            say(f"run {run_id} is over but still held a concurrency slot; freed")


def _holders(instance: DagsterInstance, pools: Sequence[str]) -> list[RunInProgress]:
    return [e for e in runs_in_progress(instance) if set(_pools_held(instance, e.run.run_id)) & set(pools)]


def wait_for_pools(instance: DagsterInstance, pools: Sequence[str], wait_s: float, say: Callable[[str], None],
                   *, clock: Callable[[], float] = time.monotonic) -> None:
    """Returns once no live run holds a slot of ``pools``, freeing what dead runs hold; raises WaitTimeout
    after ``wait_s`` seconds and WaitInterrupted on Ctrl-C."""
    deadline = clock() + wait_s
    announced: set[str] = set()
    holders: list[RunInProgress] = []
    try:
        while True:
            fail_dead_runs(instance, say)
            holders = _holders(instance, pools) if pools else []
            if not holders:
                return
            for holder in holders:
                if holder.run.run_id not in announced:
                    announced.add(holder.run.run_id)
                    say(f"waiting for {holder.describe(with_start=True)} to finish...")
            if clock() >= deadline:
                raise WaitTimeout(holders[0], pools, wait_s)
            time.sleep(min(POLL_S, max(deadline - clock(), 0.0)))
    except KeyboardInterrupt:
        raise WaitInterrupted(holders) from None
