"""Faults in the middle of a table's load, on real servers: the SSH connection cut, prod restarted, prod's
backend terminated, Ctrl-C to ``websync sync``, and a run paused with SIGSTOP.

To be inside a table's transaction at a known point, a test trigger on prod's ``web_pages`` makes the
load wait on an advisory lock the test holds, after some rows are already written in that transaction.
The fault is injected there. Then: ``web_pages`` is as it was, the tables loaded before it keep what
they committed, the error is one line naming ``web_pages``, and the next run completes with no row
loaded twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import Settings, load_settings
from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run import run_tables
from websync_dagster.engine.table_run import TableRun
from websync_dagster.transport import make_transport
from websync_dagster.transport.base import Query
from websync_dagster.transport.direct import KEEPALIVE_IDLE_S
from websync_dagster_tests.conftest import CONTAINER, PROD_PASSWORD, TRANSPORTS
from websync_dagster_tests.helpers import sync_all, table_snapshot

TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")
EARLIER = ("web_sources", "knowledge_base")
PAUSE_KEY = "websync-test:pause"
#: the row of web_pages (in the order prod inserts them) at which the load waits for the test
PAUSE_AT_ROW = 50

# Waits, at the PAUSE_AT_ROW-th row inserted, for the advisory lock the test holds. The sequence is not
# transactional: once passed, the pause never comes back (the next run is not held). With the argument
# 'not copy', rows inserted by a COPY do not count (the pause lands in the staged INSERT).
PAUSE_TRIGGER = """
CREATE SEQUENCE websync_test_rows;
CREATE FUNCTION websync_test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_ARGV[0] = 'not copy' AND current_query() ILIKE 'copy%' THEN RETURN NEW; END IF;
  IF nextval('websync_test_rows') = {row} THEN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('{key}', 0));
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER websync_test_pause BEFORE INSERT ON web_pages FOR EACH ROW EXECUTE FUNCTION websync_test_pause('{when}');
"""


def _install_pause(prod: psycopg.Connection, when: str = "any") -> None:
    prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
    prod.execute(PAUSE_TRIGGER.format(row=PAUSE_AT_ROW, key=PAUSE_KEY, when=when))
    prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")


@contextlib.contextmanager
def _pause_lock_held(url: str) -> Iterator[psycopg.Connection]:
    """A test session holding the pause lock; released when the block ends (or when its server goes away)."""
    holder = psycopg.connect(url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [PAUSE_KEY])
    try:
        yield holder
    finally:
        with contextlib.suppress(psycopg.Error):
            holder.close()


def _paused_backend(url: str, timeout: float = 60) -> int:
    """The pid of prod's backend waiting on the pause lock, once the load has reached it."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError("the load never reached the paused row")


def _wait_transaction_over(url: str, pid: int, timeout: float) -> float:
    """Seconds until prod's backend ``pid`` holds no transaction: ended, or idle outside one (fails after
    ``timeout``)."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            row = conn.execute("SELECT xact_start FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
            if row is None or row[0] is None:
                return time.monotonic() - started
            time.sleep(0.05)
    raise AssertionError(f"prod's backend {pid} still in its transaction after {timeout} s")


def _wait_backend_gone(url: str, pid: int, timeout: float) -> float:
    """Seconds until prod's backend ``pid`` has ended (fails after ``timeout``)."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                return time.monotonic() - started
            time.sleep(0.05)
    raise AssertionError(f"prod's backend {pid} still there after {timeout} s")


class SyncInThread:
    """A whole sync (every table, as websync_job runs them) in a thread; each table's TableRun kept."""

    def __init__(self, settings: Settings) -> None:
        self.runs: dict[str, TableRun] = {}
        self.errors: list[BaseException] = []
        self.reports: list[str] = []
        self.thread = threading.Thread(target=self._sync, args=(settings,), daemon=True)
        self.thread.start()

    def _sync(self, settings: Settings) -> None:
        try:
            with SyncContext(settings) as ctx:
                tables = settings.tables
                for run in run_tables(ctx, export=tables, load=tables, declared_deps=DECLARED_DEPS,
                                      report=lambda event: self.reports.append(event.text())):
                    self.runs[run.table] = run
        except BaseException as exc:  # noqa: BLE001 - examined by the test thread
            self.errors.append(exc)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the sync did not end"
        assert not self.errors, self.errors


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "websync_dagster.cli", "sync", "--env-file", "/dev/null", *args],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _snapshots(url: str, tables: tuple[str, ...] = TABLES) -> dict[str, dict]:
    with psycopg.connect(url, autocommit=True) as prod:
        return {t: table_snapshot(prod, t) for t in tables}


def _restart(server) -> None:
    """Stop prod (fast shutdown: every backend ends, open transactions roll back) and start it again on
    the same port: the server is shared by the whole session."""
    port = server.port
    server.stop()
    server.start()
    assert server.port == port


def _assert_next_run_completes(sync_env, settings: Settings, before: dict[str, dict]) -> None:
    """The run after the fault: web_pages and web_files land, the earlier tables get nothing twice."""
    outcomes = sync_all(settings)
    for table in EARLIER:
        assert outcomes[table].result.inserted == 0, table
    assert outcomes["web_pages"].result.inserted > PAUSE_AT_ROW
    after = _snapshots(sync_env.prod_url)
    for table in TABLES:
        assert {i: after[table][i] for i in before[table]} == before[table], table
        assert len(after[table]) == outcomes[table].result.after, table
    with sync_env.prod() as prod:
        dupes = prod.execute("SELECT count(*) FROM (SELECT web_source_id, url_hash FROM web_pages "
                             "GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
        assert dupes == 0


FAULTS = [
    ("terminate", "direct"), ("terminate", "ssh_tunnel"), ("terminate", "ssh_psql"),
    ("restart", "direct"), ("restart", "ssh_psql"),
    ("ssh_cut", "ssh_tunnel"), ("ssh_cut", "ssh_psql"),
]


@pytest.mark.parametrize(("fault", "prod_via"), FAULTS, indirect=["prod_via"])
def test_a_fault_mid_table_rolls_it_back_and_the_same_run_reconnects_and_completes(sync_env, prod_via, fault, request):
    """The link to prod breaks while web_pages is half written: prod rolls that table back, the run says so
    in one line, reconnects and ships the table's delta again; every table lands once, nothing twice."""
    settings = prod_via(sync_env)
    before = _snapshots(sync_env.prod_url)
    with sync_env.prod() as prod:
        _install_pause(prod)
    with _pause_lock_held(sync_env.prod_url):
        sync = SyncInThread(settings)
        pid = _paused_backend(sync_env.prod_url)
        at_pause = _snapshots(sync_env.prod_url, EARLIER)
        if fault == "terminate":
            with sync_env.prod() as prod:
                assert prod.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone()[0]
        elif fault == "restart":
            _restart(sync_env.prod_server)
        else:
            assert request.getfixturevalue("vps").sshd.kill_sessions() >= 1
    # the lock is released: a backend whose client is gone goes on and sees it at its next read
    sync.join(120)
    _wait_backend_gone(sync_env.prod_url, pid, 30)
    runs = sync.runs
    assert all(runs[t].landed for t in TABLES), {t: runs[t].error for t in TABLES}
    retries = [line for line in sync.reports if "reconnecting in" in line]
    assert retries and all(line.startswith("web_pages: the link to prod broke (") for line in retries), retries
    assert "(retry 1 of 3)" in retries[0] and all("\n" not in line for line in retries)
    after = _snapshots(sync_env.prod_url)
    for table in EARLIER:
        assert after[table] == at_pause[table], table  # committed before the fault, not shipped twice
    for table in TABLES:
        assert {i: after[table][i] for i in before[table]} == before[table], table
        assert len(after[table]) == runs[table].load.result.after, table
    assert runs["web_pages"].load.result.inserted > PAUSE_AT_ROW
    with sync_env.prod() as prod:
        dupes = prod.execute("SELECT count(*) FROM (SELECT web_source_id, url_hash FROM web_pages "
                             "GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
        assert dupes == 0
    assert all(outcome.result.inserted == 0 for outcome in sync_all(settings).values())


def test_ctrl_c_mid_table_rolls_that_table_back_and_the_next_run_completes(sync_env):
    before = _snapshots(sync_env.prod_url)
    with sync_env.prod() as prod:
        _install_pause(prod)
    with _pause_lock_held(sync_env.prod_url):
        cli = _cli(sync_env.env)
        pid = _paused_backend(sync_env.prod_url)
        at_pause = _snapshots(sync_env.prod_url, EARLIER)
        cli.send_signal(signal.SIGINT)
        _, stderr = cli.communicate(timeout=60)
        # prod's backend ends now, though it was waiting on a lock (websync cancels it on Ctrl-C)
        _wait_backend_gone(sync_env.prod_url, pid, 10)
    assert cli.returncode != 0
    print(stderr)
    lines = [line for line in stderr.splitlines() if "web_pages" in line and "error" in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    after = _snapshots(sync_env.prod_url)
    assert after["web_pages"] == before["web_pages"]
    for table in EARLIER:
        assert after[table] == at_pause[table], table
        assert len(after[table]) > len(before[table]), table
    _assert_next_run_completes(sync_env, sync_env.settings(), before)


IDLE_TIMEOUT_S = 3
IDLE_TIMEOUT_ENV = "WEBSYNC_PROD_IDLE_TIMEOUT_S"


def _env_via(sync_env, transport: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of a `websync` process reaching the test's prod through ``transport``."""
    if transport == "direct":
        return dict(sync_env.env)
    vps = request.getfixturevalue("vps")
    database = sync_env.prod_url.rsplit("/", 1)[1]
    if transport == "ssh_tunnel":
        url = f"postgresql://postgres:{PROD_PASSWORD}@docker:{CONTAINER}:{sync_env.prod_server.port}/{database}"
        return {**sync_env.env, **vps.env(WEBSYNC_PROD_URL=url)}
    command = f"docker exec -i {CONTAINER} psql -U postgres -d {database}"
    return {**sync_env.env, **vps.env(WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL=command)}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_paused_run_releases_prod_within_the_idle_timeout_and_a_second_run_completes(sync_env, transport, request):
    """A run stopped (SIGSTOP, Ctrl-Z) in the middle of a unit: prod releases the table's lock within
    WEBSYNC_PROD_IDLE_TIMEOUT_S, either because it had the whole unit and committed it (every transport sends a
    unit's statements after its COPY as one query string, ssh_psql as one script), or because it ended the session
    idle in its transaction; a second run started meanwhile completes."""
    before = _snapshots(sync_env.prod_url)
    with sync_env.prod() as prod:
        _install_pause(prod, when="not copy")
    env = {**_env_via(sync_env, transport, request), IDLE_TIMEOUT_ENV: str(IDLE_TIMEOUT_S)}
    with _pause_lock_held(sync_env.prod_url):
        first = _cli(env)
        pid = _paused_backend(sync_env.prod_url)
        first.send_signal(signal.SIGSTOP)
    try:
        # the INSERT goes on without its (stopped) client: prod has the rest of the unit and commits it, or waits
        # for the client, idle in transaction, until the idle timeout ends the session
        gone_after = _wait_transaction_over(sync_env.prod_url, pid, IDLE_TIMEOUT_S + 15)
        second = SyncInThread(load_settings(env, env_file=None))
        second.join(60)
    finally:
        first.send_signal(signal.SIGCONT)
        _, stderr = first.communicate(timeout=60)
    print(f"the paused unit's transaction was over {gone_after:.1f} s after the pause")
    assert all(run.landed for run in second.runs.values()), {t: r.error for t, r in second.runs.items()}
    # resumed, the first run goes on (its unit committed by prod, which had it whole) or finds its session gone
    # and reconnects; either way it ships what prod lacks now (nothing: the second run shipped it)
    assert first.returncode == 0, stderr
    after = _snapshots(sync_env.prod_url)
    for table in TABLES:
        assert {i: after[table][i] for i in before[table]} == before[table], table
    _assert_next_run_completes_with_nothing_new(sync_env)


def _assert_next_run_completes_with_nothing_new(sync_env) -> None:
    outcomes = sync_all(sync_env.settings())
    assert all(outcome.result.inserted == 0 for outcome in outcomes.values())


def test_every_prod_session_ends_when_idle_in_a_transaction(sync_env, prod_via):
    """The timeout (and, over psycopg, the server's TCP keepalives) is set in the session that loads."""
    sync_env.env[IDLE_TIMEOUT_ENV] = "7"
    settings = prod_via(sync_env)
    assert settings.prod_idle_timeout_s == 7
    with make_transport(settings).session() as session:
        [row] = session.run_transaction([Query("settings", sql.SQL(
            "SELECT current_setting('idle_in_transaction_session_timeout') AS idle, "
            "current_setting('tcp_keepalives_idle') AS keepalives_idle"))]).rows("settings")
    assert row["idle"] == "7s"
    if prod_via.transport != "ssh_psql":  # psql's own connection on the VPS is a local one there
        assert row["keepalives_idle"] == str(KEEPALIVE_IDLE_S)
    sync_env.env[IDLE_TIMEOUT_ENV] = "soon"
    message = f"^{IDLE_TIMEOUT_ENV} must be a whole number of seconds above 0, not 'soon'$"
    with pytest.raises(ConfigError, match=message):
        prod_via(sync_env)


def _install_refusal(prod: psycopg.Connection, page_id: str) -> None:
    """Prod refuses the web_pages row ``page_id`` (a trigger raising: a row refusal, class P0)."""
    prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
    prod.execute(sql.SQL(
        "CREATE FUNCTION websync_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.id = {} THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"
    ).format(sql.Literal(page_id)))
    prod.execute("CREATE TRIGGER websync_test_refuse BEFORE INSERT ON web_pages FOR EACH ROW "
                 "EXECUTE FUNCTION websync_test_refuse()")
    prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")


def _dev_ids(sync_env) -> set[str]:
    with sync_env.dev() as dev:
        return {r[0] for r in dev.execute("SELECT id::text FROM web_pages")}


#: one row per commit unit: each unit's time (1 ns) is up by its first row end (see engine/units.py)
EVERY_ROW = {"WEBSYNC_COMMIT_EVERY_S": "0.000000001"}


@pytest.mark.parametrize(("fault", "prod_via"), [("terminate", "direct"), ("terminate", "ssh_psql"),
                                                  ("ssh_cut", "ssh_tunnel")], indirect=["prod_via"])
def test_a_fault_mid_table_keeps_the_units_committed_before_it_and_the_run_sends_only_the_rest(
        sync_env, prod_via, fault, request):
    """Committed in units, the rows before the fault stay in prod; the run reconnects, says how many stay,
    and sends only what prod still lacks: every row lands once."""
    sync_env.env.update(EVERY_ROW)
    settings = prod_via(sync_env)
    before = _snapshots(sync_env.prod_url)
    with sync_env.dev() as dev:  # the export reads dev in this order: a row of an early unit
        refused = dev.execute("SELECT id::text FROM web_pages ORDER BY ctid OFFSET 10 LIMIT 1").fetchone()[0]
    with sync_env.prod() as prod:
        _install_pause(prod)
        _install_refusal(prod, refused)
    with _pause_lock_held(sync_env.prod_url):
        sync = SyncInThread(settings)
        pid = _paused_backend(sync_env.prod_url)
        committed = _snapshots(sync_env.prod_url, ("web_pages",))["web_pages"]
        if fault == "terminate":
            with sync_env.prod() as prod:
                assert prod.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone()[0]
        else:
            assert request.getfixturevalue("vps").sshd.kill_sessions() >= 1
    sync.join(120)
    kept = len(committed) - len(before["web_pages"])
    assert kept > PAUSE_AT_ROW // 2, f"only {kept} web_pages rows were committed before the pause"
    runs = sync.runs
    assert all(runs[t].landed for t in TABLES), {t: runs[t].error for t in TABLES}
    retries = [line for line in sync.reports if "reconnecting in" in line]
    assert len(retries) == 1 and f"({kept} rows committed before stay)" in retries[0], retries
    after = _snapshots(sync_env.prod_url)
    assert {i: after["web_pages"][i] for i in committed} == committed  # kept, not sent twice
    result = runs["web_pages"].load.result
    assert result.inserted == len(after["web_pages"]) - len(before["web_pages"]) == result.after - result.before
    assert result.lost == 0 and result.commits > kept
    # refused before the cut and again by the retry (it is not in prod): one reject, in the retry's file
    expected_rejects = {refused, *(i for i, _ in sync_env.facts.rejected.items() if i in _dev_ids(sync_env))}
    rejected = [json.loads(line)["id"] for line in Path(result.reject_file).read_text().splitlines()]
    assert result.rejected == len(rejected) == len(expected_rejects) and set(rejected) == expected_rejects
    with sync_env.prod() as prod:
        dupes = prod.execute("SELECT count(*) FROM (SELECT web_source_id, url_hash FROM web_pages "
                             "GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
        assert dupes == 0
    assert all(outcome.result.inserted == 0 for outcome in sync_all(settings).values())
