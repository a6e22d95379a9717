"""The wait for a job's pools and the claim of their slots, which keep one run from blocking the next: a run that
holds a pool is waited for, for a bounded time, saying which run it is, and the slot of a pool is claimed once, by
the process that waited for it (``wait_for_pools``), before its run is created."""

from __future__ import annotations

import fcntl
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from dagster import DagsterInstance, JobDefinition, OpDefinition

from websync_dagster.defs.run_processes import (
    HOST_TAG,
    PID_TAG,
    RunInProgress,
    fail_dead_runs,
    free_slots_of_ended_runs,
    pools_held,
    runs_in_progress,
)

#: a pool's claim among websync processes: an exclusive flock on this file, which names the holder's pid
POOL_LOCK_FILE = ".websync.pool.{pool}.lock"
POLL_S = 1.0


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


def _holders(instance: DagsterInstance, live: Sequence[RunInProgress], pools: Sequence[str]) -> list[Holder]:
    return [e for e in live if set(pools_held(instance, e.run.run_id)) & set(pools)]


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
