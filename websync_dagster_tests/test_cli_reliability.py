"""The `websync` command as a user runs it (a subprocess) when things go wrong: a run killed mid-load, a
run that has to wait for another one, two first runs at once on a new DAGSTER_HOME, and failures that
must be one line."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import psycopg
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from websync_dagster.defs.instance import instance_yaml
from websync_dagster_tests.conftest import DEV_PASSWORD, PROD_PASSWORD
from websync_dagster_tests.helpers import count

REPO = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).parent / "dagster")
ERROR = "websync: error:"
LOAD_LOCK = "SELECT pg_advisory_lock(hashtextextended('websync:web_sources', 0))"


@pytest.fixture
def cli_env(sync_env, tmp_path) -> dict[str, str]:
    """The environment of a user's shell: the sync pair and a DAGSTER_HOME that websync sets up itself
    (so the project's dagster.yaml and its prod_sync pool apply)."""
    env = {**os.environ, **sync_env.env, "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("DAGSTER_PG_URL", None)
    return env


def websync(env: dict[str, str], *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "websync_dagster.cli", *args, "--env-file", "/dev/null"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def start_websync(env: dict[str, str], *args: str, stderr: Path) -> subprocess.Popen:
    with open(stderr, "w") as err:
        return subprocess.Popen([sys.executable, "-m", "websync_dagster.cli", *args, "--env-file", "/dev/null"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def load_lock_held(prod_url: str) -> Iterator[Callable[[], None]]:
    """Holds prod's load lock of web_sources: a run blocks inside its load until the block ends. Yields a
    function that returns once some session waits for that lock."""
    with psycopg.connect(prod_url, autocommit=True) as holder:
        holder.execute(LOAD_LOCK)

        def a_load_waits() -> None:
            wait_for(lambda: holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                            "AND NOT granted").fetchone()[0] > 0, "a load to wait for the lock")

        yield a_load_waits


def run_in_progress(home: Path) -> str:
    instance = DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].status == DagsterRunStatus.STARTED, runs
    return runs[0].run_id


def no_stack_trace(stderr: str) -> bool:
    return not any(mark in stderr for mark in ("Traceback", "Stack Trace", 'File "'))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR)]


def table_row(stdout: str, table: str) -> list[str]:
    return next(line.split() for line in stdout.splitlines() if line.strip().startswith(table))


# --- item 1: a killed run never blocks the next one ------------------------------------------------------------

def test_a_killed_run_is_marked_failed_and_the_next_run_proceeds(cli_env, sync_env, tmp_path):
    home = Path(cli_env["DAGSTER_HOME"])
    with load_lock_held(sync_env.prod_url) as a_load_waits:
        killed = start_websync(cli_env, "sync", stderr=tmp_path / "killed.err")
        a_load_waits()
        run_id = run_in_progress(home)
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
    with sync_env.prod() as prod:  # the orphaned backend gives up once it gets the lock: nothing landed
        wait_for(lambda: prod.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0] == 0,
                 "the killed run's session to end", 30)
        assert count(prod, "web_sources") == sync_env.facts.prod_counts["web_sources"]
    done = websync(cli_env, "sync", "--quiet", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line for line in done.stderr.splitlines() if "died" in line] == [
        f"websync: run {run_id} (pid {killed.pid}) died without finishing; marked failed and its prod_sync slot freed"]
    before, after, inserted = table_row(done.stdout, "web_sources")[1:4]
    assert int(before) == sync_env.facts.prod_counts["web_sources"]  # the killed load was rolled back
    with sync_env.prod() as prod:
        assert int(after) == count(prod, "web_sources") == int(before) + int(inserted)
    instance = DagsterInstance.from_config(str(home))
    statuses = {r.run_id: r.status for r in instance.get_runs()}
    assert statuses.pop(run_id) == DagsterRunStatus.FAILURE
    assert list(statuses.values()) == [DagsterRunStatus.SUCCESS]
    assert not instance.event_log_storage.get_concurrency_run_ids()


def test_a_run_waits_for_a_live_run_says_so_and_gives_up_in_bounded_time(cli_env, sync_env, tmp_path):
    home = Path(cli_env["DAGSTER_HOME"])
    with load_lock_held(sync_env.prod_url) as a_load_waits:
        first = start_websync(cli_env, "sync", "--quiet", stderr=tmp_path / "first.err")
        a_load_waits()
        run_id = run_in_progress(home)
        started = time.monotonic()
        second = websync({**cli_env, "WEBSYNC_WAIT_S": "3"}, "sync", "--quiet", timeout=90)
        assert time.monotonic() - started < 60
        assert first.poll() is None  # the live run is left alone
    assert first.wait(120) == 0, (tmp_path / "first.err").read_text()[-3000:]
    assert second.returncode == 1, second.stderr[-3000:]
    assert re.search(rf"^websync: waiting for run {run_id} \(pid {first.pid}, started \d\d:\d\d\) to finish\.\.\.$",
                     second.stderr, re.M), second.stderr
    assert error_lines(second.stderr) == [
        f"{ERROR} run {run_id} (pid {first.pid}) still holds the prod_sync slot after 3 s (WEBSYNC_WAIT_S); "
        "nothing was run"]
    assert no_stack_trace(second.stderr)
    runs = DagsterInstance.from_config(str(home)).get_runs()
    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS]  # the second run never started one


def test_ctrl_c_while_waiting_exits_promptly(cli_env, sync_env, tmp_path):
    home = Path(cli_env["DAGSTER_HOME"])
    with load_lock_held(sync_env.prod_url) as a_load_waits:
        first = start_websync(cli_env, "sync", "--quiet", stderr=tmp_path / "first.err")
        a_load_waits()
        run_id = run_in_progress(home)
        err = tmp_path / "second.err"
        second = start_websync(cli_env, "sync", "--quiet", stderr=err)
        wait_for(lambda: "waiting for run" in err.read_text(), "the second run to wait", 60)
        second.send_signal(signal.SIGINT)
        assert second.wait(10) == 130
        assert first.poll() is None
    assert first.wait(120) == 0
    assert error_lines(err.read_text()) == [f"{ERROR} interrupted while waiting for run {run_id}; nothing was run"]


def _home_with_websync_yaml(cli_env: dict[str, str]) -> Path:
    """DAGSTER_HOME with websync's instance settings, as `websync` writes them (the prod_sync pool)."""
    home = Path(cli_env["DAGSTER_HOME"])
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml({}))
    return home


def _dagster_job_execute(cli_env: dict[str, str], out: IO[str]) -> subprocess.Popen:
    """websync_job started outside websync (no websync pid tag), as `dagster job execute` does."""
    return subprocess.Popen([DAGSTER, "job", "execute", "-m", "websync_dagster.definitions", "-j", "websync_job"],
                            cwd=REPO, env=cli_env, stdout=out, stderr=subprocess.STDOUT)


def test_a_run_launched_outside_websync_is_waited_for_not_failed(cli_env, sync_env, tmp_path):
    """A run from the webserver or `dagster job execute` has no websync pid: it is never taken for dead."""
    home = _home_with_websync_yaml(cli_env)
    with load_lock_held(sync_env.prod_url) as a_load_waits, open(tmp_path / "dagster.err", "w") as out:
        other = _dagster_job_execute(cli_env, out)
        a_load_waits()
        run_id = run_in_progress(home)
        second = websync({**cli_env, "WEBSYNC_WAIT_S": "2"}, "sync", "--quiet", timeout=90)
        assert other.poll() is None
    assert other.wait(120) == 0
    assert second.returncode == 1, second.stderr[-3000:]
    assert re.search(rf"^websync: waiting for run {run_id} \(not started by websync, started \d\d:\d\d\) "
                     r"to finish\.\.\.$", second.stderr, re.M), second.stderr
    assert "died" not in second.stderr
    assert error_lines(second.stderr) == [
        f"{ERROR} run {run_id} (not started by websync) still holds the prod_sync slot after 2 s (WEBSYNC_WAIT_S); "
        "nothing was run; if it is dead, terminate it in the Dagster UI"]
    runs = DagsterInstance.from_config(str(home)).get_runs()
    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS]


def test_a_dead_run_not_started_by_websync_is_freed_once_terminated_in_the_ui(cli_env, sync_env, tmp_path):
    """websync cannot tell whether a run it did not start is alive: it waits and says how to end it; once the
    run is marked over (as the UI's force-terminate does), the next run frees the slot it left behind."""
    home = _home_with_websync_yaml(cli_env)
    with load_lock_held(sync_env.prod_url) as a_load_waits, open(tmp_path / "dagster.err", "w") as out:
        other = _dagster_job_execute(cli_env, out)
        a_load_waits()
        run_id = run_in_progress(home)
        other.send_signal(signal.SIGKILL)
        other.wait(10)
    waited = websync({**cli_env, "WEBSYNC_WAIT_S": "1"}, "sync", "--quiet", timeout=90)
    assert waited.returncode == 1 and "terminate it in the Dagster UI" in waited.stderr, waited.stderr
    instance = DagsterInstance.from_config(str(home))
    instance.report_run_canceled(instance.get_run_by_id(run_id), message="force-terminated by the test")
    assert instance.event_log_storage.get_concurrency_run_ids() == {run_id}  # Dagster leaves the slot held
    done = websync(cli_env, "sync", "--quiet", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line for line in done.stderr.splitlines() if run_id in line] == [
        f"websync: run {run_id} is over but still held a concurrency slot; freed"]


# --- item 8: two first runs on a new DAGSTER_HOME ---------------------------------------------------------------

def test_two_first_runs_on_a_new_dagster_home_both_succeed(cli_env, tmp_path):
    for attempt in range(3):
        env = {**cli_env, "DAGSTER_HOME": str(tmp_path / f"new_home_{attempt}")}
        procs = [start_websync(env, "status", "--quiet", stderr=tmp_path / f"status_{attempt}_{i}.err")
                 for i in range(2)]
        for i, proc in enumerate(procs):
            assert proc.wait(120) == 0, (tmp_path / f"status_{attempt}_{i}.err").read_text()[-3000:]
        runs = DagsterInstance.from_config(env["DAGSTER_HOME"]).get_runs()
        assert len(runs) == 2 and all(r.is_success for r in runs)


# --- item 9: a failure is one line -----------------------------------------------------------------------------

@pytest.mark.parametrize("quiet", [True, False])
def test_an_unreachable_dev_server_is_one_line(cli_env, quiet):
    env = {**cli_env, "WEBSYNC_DEV_URL": f"postgresql://dev:{DEV_PASSWORD}@127.0.0.1:1/dev"}
    done = websync(env, "sync", *(["--quiet"] if quiet else []))
    assert done.returncode == 1, done.stderr[-3000:]
    assert no_stack_trace(done.stderr) and DEV_PASSWORD not in done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "dev database" in lines[0] and "127.0.0.1:1/" in lines[0] and "Connection refused" in lines[0], lines
    if quiet:
        assert done.stderr.splitlines() == lines


def test_a_wrong_prod_password_is_one_line(cli_env, sync_env):
    env = {**cli_env, "WEBSYNC_PROD_URL": sync_env.prod_url.replace(PROD_PASSWORD, "wrong-password")}
    done = websync(env, "sync", "--quiet")
    assert done.returncode == 1, done.stderr[-3000:]
    assert no_stack_trace(done.stderr) and "wrong-password" not in done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "password authentication failed" in lines[0], done.stderr
    assert "prod" in lines[0]


def test_an_unwritable_export_dir_is_one_line(cli_env, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the export dir should be")
    done = websync({**cli_env, "WEBSYNC_EXPORT_DIR": str(blocker / "exports")}, "sync", "--quiet")
    assert done.returncode == 1, done.stderr[-3000:]
    assert no_stack_trace(done.stderr)
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and str(blocker) in lines[0], done.stderr


def test_debug_shows_the_traceback(cli_env):
    env = {**cli_env, "WEBSYNC_DEV_URL": "postgresql://dev@127.0.0.1:1/dev"}
    done = websync(env, "sync", "--quiet", "--debug")
    assert done.returncode == 1
    assert "Stack Trace:" in done.stderr and 'File "' in done.stderr
    assert len(error_lines(done.stderr)) == 1, done.stderr


@pytest.mark.parametrize(("name", "value", "named"), [
    ("WEBSYNC_DIFF_INTERVAL_S", "ten", "WEBSYNC_DIFF_INTERVAL_S"),
    ("WEBSYNC_NIGHTLY_CRON", "0 25 * * *", "WEBSYNC_NIGHTLY_CRON"),
    ("WEBSYNC_PROD_URL", "postgresql://prod@127.0.0.1:port/prod", "WEBSYNC_PROD_URL"),
    ("WEBSYNC_TABLES", " , ", "WEBSYNC_TABLES"),
])
def test_bad_configuration_is_one_line_and_exit_2_before_any_run(cli_env, name, value, named):
    done = websync({**cli_env, name: value}, "sync")
    assert done.returncode == 2, done.stderr[-3000:]
    assert no_stack_trace(done.stderr)
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and named in lines[0], done.stderr
    assert not (Path(cli_env["DAGSTER_HOME"]) / "history").exists()  # no run was started
