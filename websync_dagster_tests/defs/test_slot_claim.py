"""The prod_sync slot is claimed once, by the websync process that waited for it: two `websync sync` started
together on one DAGSTER_HOME take turns (the other one waits, bounded, naming what it waits for), a run
launched outside websync meanwhile waits for websync's run in Dagster's pool, and a process that dies
after claiming blocks nobody."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from websync_dagster.definitions import defs
from websync_dagster.defs.instance import LOCK_FILE, instance_yaml
from websync_dagster.defs.pool_wait import WaitTimeout, pool_steps, wait_for_pools
from websync_dagster_tests.test_cli_reliability import (
    ERROR,
    REPO,
    cli_env,  # noqa: F401 - the fixture
    error_lines,
    no_stack_trace,
    start_websync,
    wait_for,
    websync,
)

POOL, STEP = "prod_sync", "sync_to_prod"
TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")
WAIT_S = 3


def _waiters(path: Path) -> int:
    """How many processes wait for the flock on ``path`` (the kernel lists them in /proc/locks, marked ``->``)."""
    inode = f":{os.stat(path).st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "->" in line and inode in line)


@contextlib.contextmanager
def start_line(home: Path, processes: int) -> Iterator[None]:
    """Holds DAGSTER_HOME's setup lock (the one websync takes to write dagster.yaml and open the instance) until
    ``processes`` processes wait for it: released at the end of the block, they go on from there together."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
        wait_for(lambda: _waiters(home / LOCK_FILE) >= processes, f"{processes} websync processes at the start", 90)
        fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def ended_at_exit(procs: list[subprocess.Popen]) -> Iterator[None]:
    """The test's own processes still running when the block fails (an assertion) are killed."""
    try:
        yield
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        raise


@contextlib.contextmanager
def prod_held_in_turn(prod_url: str, hold_s: float) -> Iterator[None]:
    """Holds prod's load lock of every table (the advisory lock each load takes), from another session: a load
    that waits for one is let through after ``hold_s``, shorter than WEBSYNC_WAIT_S, which bounds each lock
    wait. A sync lasts about ``hold_s`` per table, and succeeds. Whatever is held at the end is released."""
    stop = threading.Event()
    with psycopg.connect(prod_url, autocommit=True) as conn:
        keys = {}
        for table in TABLES:
            key = conn.execute("SELECT hashtextextended(%s, 0)", [f"websync:{table}"]).fetchone()[0]
            conn.execute("SELECT pg_advisory_lock(%s)", [key])
            keys[table] = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)  # pg_locks' classid, objid

        def let_through() -> None:
            waited_since: dict[str, float] = {}
            while keys and not stop.wait(0.05):
                waiting = set(conn.execute("SELECT classid::bigint, objid::bigint FROM pg_locks "
                                           "WHERE locktype = 'advisory' AND NOT granted").fetchall())
                now = time.monotonic()
                for table, lock in list(keys.items()):
                    if lock in waiting and now - waited_since.setdefault(table, now) >= hold_s:
                        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [f"websync:{table}"])
                        del keys[table]

        thread = threading.Thread(target=let_through, name="prod-held-in-turn")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)
            conn.execute("SELECT pg_advisory_unlock_all()")


def _home_with_websync_yaml(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml({}))
    return home


# --- the fast layer: the claim itself, on a real SQLite instance ----------------------------------------------

def test_the_sync_job_claims_its_one_prod_sync_step():
    assert pool_steps(defs().resolve_job_def("websync_job")) == {POOL: [STEP]}
    assert pool_steps(defs().resolve_job_def("export_job")) == {POOL: [STEP]}
    assert pool_steps(defs().resolve_job_def("status_job")) == {}


def test_every_step_claimed_ahead_is_a_step_of_the_jobs_plan():
    """A slot claimed under another key than the step's would be one the run waits for itself."""
    from dagster._core.execution.api import create_execution_plan

    needed = {"undo_job": {"ops": {"undo_run": {"config": {"run_id": "20261202_000000_0123456789ab"}}}}}
    for job in defs().get_repository_def().get_all_jobs():
        planned = set(create_execution_plan(job, run_config=needed.get(job.name)).step_keys_to_execute)
        for pool, steps in pool_steps(job).items():
            assert set(steps) <= planned, (job.name, pool, steps, planned)
            assert steps, (job.name, pool)  # every pool of websync's jobs is claimed ahead


def test_the_slot_is_claimed_for_the_run_before_it_exists_and_a_second_claim_waits_for_it(tmp_path):
    home = _home_with_websync_yaml(tmp_path)
    instance = DagsterInstance.from_config(str(home))
    job = defs().resolve_job_def("websync_job")
    said: list[str] = []
    claim = wait_for_pools(instance, home, job, 0, said.append)
    with claim:
        storage = instance.event_log_storage
        info = storage.get_concurrency_info(POOL)
        assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [(claim.run_id, STEP)]
        assert instance.get_run_by_id(claim.run_id) is None  # claimed ahead of the run
        # a run launched outside websync (no flock) now queues in Dagster's pool behind the claim
        other = str(uuid.uuid4())
        assert not storage.claim_concurrency_slot(POOL, other, STEP).is_claimed
        storage.free_concurrency_slots_for_run(other)
        # another websync process: the flock names this one; it waits (here 0 s) and says so
        with pytest.raises(WaitTimeout) as raised:
            wait_for_pools(instance, home, job, 0, said.append)
        assert str(raised.value) == (f"websync process pid {os.getpid()} still holds the prod_sync slot after 0 s "
                                     "(WEBSYNC_WAIT_S); nothing was run")
        assert said == [f"waiting for websync process pid {os.getpid()} (its run is not started yet) to finish..."]
        assert (home / ".websync.pool.prod_sync.lock").read_text().split()[0] == str(os.getpid())
    assert not storage.get_concurrency_info(POOL).claimed_slots
    assert not storage.get_concurrency_run_ids()
    with wait_for_pools(instance, home, job, 0, said.append) as again:  # released: the next one claims at once
        assert storage.get_concurrency_info(POOL).active_run_ids == {again.run_id}
    assert len(said) == 1


# --- through the CLI, as a user runs it -----------------------------------------------------------------------

def test_two_syncs_started_together_one_runs_the_other_waits_bounded_and_says_for_what(cli_env, sync_env, tmp_path):  # noqa: F811
    home = Path(cli_env["DAGSTER_HOME"])
    env = {**cli_env, "WEBSYNC_WAIT_S": str(WAIT_S)}
    errs = [tmp_path / f"sync_{i}.err" for i in range(2)]
    procs: list[subprocess.Popen] = []
    with ended_at_exit(procs), prod_held_in_turn(sync_env.prod_url, hold_s=WAIT_S - 1):
        with start_line(home, 2):
            procs += [start_websync(env, "sync", "--quiet", stderr=err) for err in errs]
        started = time.monotonic()
        waiting_seen: dict[int, float] = {}
        while time.monotonic() < started + WAIT_S + 30 and all(p.poll() is None for p in procs):
            for i, err in enumerate(errs):
                if i not in waiting_seen and "websync: waiting for " in err.read_text():
                    waiting_seen[i] = time.monotonic()
            time.sleep(0.1)
        ended = time.monotonic()
        finished = [i for i, p in enumerate(procs) if p.poll() is not None]
        assert finished, f"neither sync ended within {WAIT_S + 30} s\n" + "\n".join(e.read_text()[-2000:] for e in errs)
        assert len(finished) == 1, [e.read_text()[-2000:] for e in errs]
        loser, winner = procs[finished[0]], procs[1 - finished[0]]
        loser_err = errs[finished[0]].read_text()
        assert loser.returncode == 1, (
            f"the first sync to end exited {loser.returncode} after {ended - started:.1f} s: the other one was not "
            f"refused within WEBSYNC_WAIT_S={WAIT_S} (it passed the check too and waits for the slot inside "
            f"Dagster's pool, unbounded)\n{loser_err[-2000:]}")
        instance = DagsterInstance.from_config(str(home))
        runs = instance.get_runs()
        assert [r.status for r in runs] == [DagsterRunStatus.STARTED], runs  # the loser created no run
        run_id = runs[0].run_id
        info = instance.event_log_storage.get_concurrency_info(POOL)
        assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [(run_id, STEP)]
        assert [s.run_id for s in info.pending_steps] == [run_id]  # one claim: the step took the one made for it
        assert winner.poll() is None
    assert winner.wait(120) == 0, errs[1 - finished[0]].read_text()[-3000:]
    holder = rf"(run {run_id} \(pid {winner.pid}\)|websync process pid {winner.pid})"
    waiting = [line for line in loser_err.splitlines() if line.startswith("websync: waiting for ")]
    assert waiting and all(re.fullmatch(
        rf"websync: waiting for (run {run_id} \(pid {winner.pid}, started \d\d:\d\d\)|websync process pid "
        rf"{winner.pid} \(its run is not started yet\)) to finish\.\.\.", line) for line in waiting), loser_err
    [line] = error_lines(loser_err)
    assert re.fullmatch(rf"{re.escape(ERROR)} {holder} still holds the prod_sync slot after {WAIT_S} s "
                        r"\(WEBSYNC_WAIT_S\); nothing was run", line), loser_err
    assert no_stack_trace(loser_err)
    assert loser_err.splitlines() == [*waiting, line]
    # bounded by WEBSYNC_WAIT_S from its first waiting line (how long two processes take to start on a loaded
    # machine is not what this test is about: it once took 31 s there)
    assert ended - waiting_seen[finished[0]] < WAIT_S + 3
    instance = DagsterInstance.from_config(str(home))
    assert [r.status for r in instance.get_runs()] == [DagsterRunStatus.SUCCESS]
    assert not instance.event_log_storage.get_concurrency_run_ids()


def _claim_and_die(env: dict[str, str]) -> str:
    """A real websync process that claims the prod_sync slot (as `websync sync` does before creating its run)
    and is killed there: returns the run id it claimed the slot for."""
    code = ("import os, signal\n"
            "from pathlib import Path\n"
            "from websync_dagster.definitions import defs\n"
            "from websync_dagster.defs.instance import open_instance\n"
            "from websync_dagster.defs.pool_wait import wait_for_pools\n"
            "instance, home = open_instance()\n"
            "claim = wait_for_pools(instance, home, defs().resolve_job_def('websync_job'), 10, print)\n"
            "print(claim.run_id, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    return done.stdout.split()[-1]


def test_a_process_killed_after_claiming_blocks_nobody(cli_env, sync_env):  # noqa: F811
    home = Path(cli_env["DAGSTER_HOME"])
    run_id = _claim_and_die(cli_env)
    instance = DagsterInstance.from_config(str(home))
    assert instance.event_log_storage.get_concurrency_info(POOL).active_run_ids == {run_id}  # left claimed
    done = websync({**cli_env, "WEBSYNC_WAIT_S": "5"}, "sync", "--quiet", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines() == [
        f"websync: a concurrency slot was claimed for run {run_id}, which was never created (the websync process "
        "that claimed it is gone); freed"]
    instance = DagsterInstance.from_config(str(home))
    assert [r.status for r in instance.get_runs()] == [DagsterRunStatus.SUCCESS]
    assert not instance.event_log_storage.get_concurrency_run_ids()
