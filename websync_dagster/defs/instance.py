"""The Dagster instance websync runs on: DAGSTER_HOME (default ./.dagster_home), with the project's
dagster.yaml, or dagster.postgres.yaml (dagster-postgres storage) when DAGSTER_PG_URL is set.

Also what keeps one run from blocking the next: each ``websync`` run is tagged with its host and pid, so
that a run whose process is gone (killed, machine crash) is found, marked failed and its concurrency
slots freed; a run that is alive is waited for, for a bounded time, saying which run it is. The slot of a
pool is claimed once, by the process that waited for it (``wait_for_pools``), before its run is created.

And where the UI looks for a run: ``code_location_tags`` files the runs websync creates under their job in the
code location workspace.yaml names.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, JobDefinition, OpDefinition, RunRecord, RunsFilter

from websync_dagster.core.processes import pid_alive

#: the instance settings websync writes into DAGSTER_HOME (shipped with the package)
INSTANCE_CONFIG = Path(__file__).resolve().parent / "instance_config"
DEFAULT_HOME = ".dagster_home"
MARKER = "websync"  # dagster.yaml files that mention it are ours to refresh; others are left alone
LOCK_FILE = ".websync.lock"
#: a pool's claim among websync processes: an exclusive flock on this file, which names the holder's pid
POOL_LOCK_FILE = ".websync.pool.{pool}.lock"
#: the code location as workspace.yaml loads it (``module_name`` and ``location_name``)
CODE_LOCATION_MODULE, CODE_LOCATION = "websync_dagster.definitions", "websync_dagster"
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


_FROM_ENVIRONMENT = object()


def prepare_dagster_home(home: str | Path | None = None, pg_url: str | None | object = _FROM_ENVIRONMENT) -> Path:
    """Create the instance's home with websync's instance settings (unless the user wrote their own): ``home``, else
    ``./.dagster_home``; with ``pg_url`` (DAGSTER_PG_URL) its storage is that Postgres database. The CLI passes
    both, as its settings loaded them; a caller without settings (the Makefile, the demo, a test) passes neither,
    and DAGSTER_HOME and DAGSTER_PG_URL are read from the environment."""
    if pg_url is _FROM_ENVIRONMENT:
        home = home or os.environ.get("DAGSTER_HOME")
        pg_url = os.environ.get("DAGSTER_PG_URL")
    if isinstance(pg_url, str) and pg_url:
        # dagster.postgres.yaml names the URL (``env: DAGSTER_PG_URL``) rather than holding it, so that its
        # password is never written to disk: Dagster reads it from the environment when the instance opens, and
        # nowhere else (the instance's config is a file). Hence this one write, with the driver it needs.
        os.environ["DAGSTER_PG_URL"] = storage_url(pg_url)
    path = Path(home or Path.cwd() / DEFAULT_HOME).absolute()
    path.mkdir(parents=True, exist_ok=True)
    with home_lock(path):
        _write_config(path, postgres=bool(pg_url))
    return path


def _write_config(path: Path, *, postgres: bool) -> None:
    config = path / "dagster.yaml"
    text = instance_yaml({"DAGSTER_PG_URL": "set"} if postgres else {})
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


def open_instance(home: str | Path | None = None,
                  pg_url: str | None | object = _FROM_ENVIRONMENT) -> tuple[DagsterInstance, Path]:
    """The instance's home prepared (``prepare_dagster_home``) and its instance opened from there (DAGSTER_HOME is
    not written: the instance is handed to what uses it), its storage schemas created by one process at a time."""
    path = prepare_dagster_home(home, pg_url)
    with home_lock(path):
        instance = DagsterInstance.from_config(str(path))
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


class Holder(Protocol):
    """What a wait for a pool waits for: a run that holds (or is queued for) one of its slots, or another websync
    process that holds the pool's claim."""

    @property
    def key(self) -> str: ...

    @property
    def hint(self) -> str: ...

    def name(self) -> str: ...

    def describe(self, *, with_start: bool = False) -> str: ...


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


@dataclass(frozen=True)
class ClaimingProcess:
    """A websync process that holds a pool's claim (its flock) and whose run is not in progress (yet)."""

    pid: int
    host: str

    @property
    def key(self) -> str:
        return f"process {self.pid}@{self.host}"

    @property
    def hint(self) -> str:
        return ""

    def name(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"websync process pid {self.pid}{where}"

    def describe(self, *, with_start: bool = False) -> str:
        return f"{self.name()} (its run is not started yet)" if with_start else self.name()


class WaitTimeout(Exception):
    def __init__(self, holder: Holder | None, pools: Sequence[str], wait_s: float) -> None:
        who, hint = (holder.describe(), holder.hint) if holder is not None else ("another run", "")
        super().__init__(f"{who} still holds the {'/'.join(pools)} slot after {wait_s:g} s (WEBSYNC_WAIT_S); "
                         f"nothing was run{hint}")


class WaitInterrupted(Exception):
    def __init__(self, holders: Sequence[Holder]) -> None:
        names = ", ".join(h.name() for h in holders) or "another run"
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


def fail_dead_runs(instance: DagsterInstance, say: Callable[[str], None]) -> list[RunInProgress]:
    """Runs left in progress by a websync process that is gone: marked failed, their slots freed. Returns the runs
    in progress that are alive."""
    in_progress = runs_in_progress(instance)
    for entry in in_progress:
        if not entry.dead:
            continue
        pools = _pools_held(instance, entry.run.run_id)
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


def _holders(instance: DagsterInstance, live: Sequence[RunInProgress], pools: Sequence[str]) -> list[Holder]:
    return [e for e in live if set(_pools_held(instance, e.run.run_id)) & set(pools)]


def pool_steps(job: JobDefinition) -> dict[str, list[str]]:
    """The pools the job's steps take a slot of (prod_sync for the sync and export jobs), each with the keys of
    the steps whose slot ``wait_for_pools`` claims before the run: the job's top-level ops (a step's key is
    its op's name), unless an op has a dynamic output (a mapped step's key is known only once the run maps
    it). Another step claims its slot when it starts, as Dagster does: in the UI's race below, unbounded."""
    ops = list(job.graph.iterate_op_defs())
    steps: dict[str, list[str]] = {op.pool: [] for op in ops if op.pool}
    if not any(output.is_dynamic for op in ops for output in op.output_defs):
        for node in job.graph.nodes:
            if isinstance(node.definition, OpDefinition) and node.definition.pool:
                steps[node.definition.pool].append(node.name)
    return {pool: sorted(keys) for pool, keys in sorted(steps.items())}


def _claim_slot(instance: DagsterInstance, pool: str, run_id: str, step_key: str) -> bool:
    """The slot of ``pool`` claimed for the step of a run not created yet, as the step would claim it when it
    starts (what Dagster's executor does, through the public EventLogStorage: the pool's default limit set up on
    first use, then the claim): True once claimed, or when the pool has no limit (nothing to claim); False (and
    queued, until freed) when it is taken."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return True
    config = storage.get_pool_config()
    if config.pool_granularity is not None and config.pool_granularity.value == "run":
        return True  # the run coordinator enforces the pools when it launches a run: steps claim nothing

    def limit() -> Any:
        return next((p for p in storage.get_pool_limits() if p.name == pool), None)

    default, current = config.default_pool_limit, limit()
    if (current is None and default is not None) or (
            current is not None and current.from_default and current.limit != default):
        storage.initialize_concurrency_limit_to_default(pool)
        current = limit()
    if current is None:
        return True
    return storage.claim_concurrency_slot(pool, run_id, step_key).is_claimed


def _pool_lock_path(home: Path, pool: str) -> Path:
    return home / POOL_LOCK_FILE.format(pool=re.sub(r"[^A-Za-z0-9_.-]", "_", pool))


class PoolClaim:
    """What a run about to be created with ``run_id`` holds of its pools: each pool's flock in DAGSTER_HOME, which
    websync processes take in turn (the file names the holder), and the Dagster slot of each of its steps
    (``pool_steps``), claimed under ``run_id``. Held until ``release`` (the end of a ``with`` block), once the run
    is over. A process that dies loses its flocks with it (the kernel releases them): the next websync process
    takes them and frees the slots the dead one had claimed (``free_slots_of_ended_runs``, ``fail_dead_runs``)."""

    def __init__(self, instance: DagsterInstance, home: Path, steps: Mapping[str, Sequence[str]]) -> None:
        self.instance, self.home, self.steps = instance, home, dict(steps)
        self.run_id = str(uuid.uuid4())  # the id Dagster gives a run (execute_in_process(run_id=...) takes it)
        self._locks: list[IO[str]] = []
        self._blocked: str | None = None  # the pool whose flock another process holds
        self._claimed = False

    @property
    def pools(self) -> list[str]:
        return list(self.steps)

    def lock(self) -> bool:
        """Every pool's flock taken without waiting: True once all are held, else none is."""
        if self._locks or not self.steps:
            return True
        for pool in self.steps:
            lock = open(_pool_lock_path(self.home, pool), "a+")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                self._unlock()
                self._blocked = pool
                return False
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()} {socket.gethostname()}\n")
            lock.flush()
            self._locks.append(lock)
        self._blocked = None
        return True

    def lock_holder(self, live: Sequence[RunInProgress]) -> Holder | None:
        """Who holds the flock this process could not take: the run of the websync process its file names, or
        that process while its run is not in progress; None while the file names nobody (being written)."""
        if self._blocked is None:
            return None
        try:
            words = _pool_lock_path(self.home, self._blocked).read_text().split()
        except OSError:
            return None
        if not words or not words[0].isdigit():
            return None
        pid, host = words[0], words[1] if len(words) > 1 else socket.gethostname()
        for entry in live:
            if entry.run.tags.get(PID_TAG) == pid and entry.run.tags.get(HOST_TAG) == host:
                return entry
        return ClaimingProcess(int(pid), host)

    def claim_slots(self) -> bool:
        """The slot of each step claimed for the run: False, with nothing claimed, when a run took one since the
        check."""
        for pool, step_keys in self.steps.items():
            for step_key in step_keys:
                self._claimed = True
                if not _claim_slot(self.instance, pool, self.run_id, step_key):
                    self._free_slots()
                    return False
        return True

    def _free_slots(self) -> None:
        if self._claimed:
            self._claimed = False
            self.instance.event_log_storage.free_concurrency_slots_for_run(self.run_id)

    def _unlock(self) -> None:
        for lock in self._locks:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
        self._locks = []

    def release(self) -> None:
        """The slots the run still holds freed (Dagster frees a step's when it ends; all, if the run never got
        to its steps), then the flocks."""
        try:
            self._free_slots()
        finally:
            self._unlock()

    def __enter__(self) -> PoolClaim:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def wait_for_pools(instance: DagsterInstance, home: Path, job: JobDefinition, wait_s: float,
                   say: Callable[[str], None], *, clock: Callable[[], float] = time.monotonic) -> PoolClaim:
    """The claim of the job's pools for the run about to be created: run it with ``run_id=claim.run_id`` and
    release the claim once it is over. Returned once this process holds each pool's flock, no live run holds or
    is queued for a slot of them, and the slots of its steps are claimed for the run, freeing on the way what
    dead runs hold; raises WaitTimeout after ``wait_s`` seconds and WaitInterrupted on Ctrl-C, holding nothing.

    The flock makes websync processes started together take turns: one claims, the others wait for it here,
    bounded, naming it. The slots are claimed in the same loop as the check that no run holds them, before the
    run exists, so that a run launched meanwhile from the UI, the schedule or ``dagster job execute`` (which
    takes no flock) waits for this one in Dagster's pool, rather than this one in Dagster's pool for it, without
    bound. What is left to that race is Dagster's own claim of a free slot (on SQLite, which locks no row, two
    claims at the same instant can both be granted, as between any two Dagster runs; prod's advisory lock still
    serialises their loads), and a pool step that is not claimed ahead (``pool_steps``)."""
    claim = PoolClaim(instance, home, pool_steps(job))
    if not claim.steps:
        return claim
    deadline = clock() + wait_s
    announced: set[str] = set()
    holders: list[Holder] = []
    try:
        while True:
            live = fail_dead_runs(instance, say)
            locked = claim.lock()
            if locked:
                free_slots_of_ended_runs(instance, {e.run.run_id for e in live}, say)
            holders = _holders(instance, live, claim.pools)
            if locked and not holders:
                if claim.claim_slots():
                    return claim
                holders = _holders(instance, runs_in_progress(instance), claim.pools)  # the run that took it
            if not locked and (other := claim.lock_holder(live)) and other.key not in {h.key for h in holders}:
                holders.insert(0, other)
            for holder in holders:
                if holder.key not in announced:
                    announced.add(holder.key)
                    say(f"waiting for {holder.describe(with_start=True)} to finish...")
            if clock() >= deadline:
                raise WaitTimeout(holders[0] if holders else None, claim.pools, wait_s)
            time.sleep(min(POLL_S, max(deadline - clock(), 0.0)))
    except KeyboardInterrupt:
        claim.release()
        raise WaitInterrupted(holders) from None
    except BaseException:
        claim.release()
        raise


#: the tags Dagster gives a run of a code location (``DagsterRun.tags_for_storage``): the repository label the
#: UI filters a job's runs on, and the location's name
REPOSITORY_LABEL_TAG, CODE_LOCATION_TAG = ".dagster/repository", "dagster/code_location"


def code_location_tags(repository_name: str) -> dict[str, str]:
    """Tags that file a run websync creates under its job in the code location workspace.yaml names
    (CODE_LOCATION, its repository ``repository_name``: ``Definitions.get_repository_def().name``), as a run
    launched from the UI or the schedule is: the UI's Jobs > job > Runs page and the Jobs list's run bars ask
    for a job's runs by its name and the repository label tag ``<repository>@<location>``.

    Why tags and not the run's origin: no public Dagster API creates a run with one (``execute_in_process``,
    ``execute_job`` and ``dagster job execute`` record none: dagster-io/dagster#17707), and websync uses no
    private API of Dagster. So such a run's ``repositoryOrigin`` stays null, and the Overview timeline, which
    groups runs by it, does not show it (docs/RELIABILITY.md, known limits). The tag names are Dagster's
    storage convention: websync_dagster_tests/defs/test_runs_in_ui.py fails, through the real webserver, if
    an upgrade changes them."""
    return {REPOSITORY_LABEL_TAG: f"{repository_name}@{CODE_LOCATION}", CODE_LOCATION_TAG: CODE_LOCATION}
