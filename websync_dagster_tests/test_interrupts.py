"""Ctrl-C, SIGTERM and a lost link while a large table's export is still running: the run ends at once.

To have dev's export of ``web_pages`` take tens of seconds, websync reads dev as a role that dev's row
security applies to (the superuser bypasses it), and a policy on dev's ``web_pages`` makes dev wait
``SLOW_ROW_S`` per row its export's COPY sends, while the test's knob is on. The rows flow the whole
time, so the load follows them into prod and commits units as it goes. The signal (or the lost link)
comes while dev's COPY runs and prod holds committed units of the table; or, with the policy on dev's other
statements instead, while dev still computes which rows prod lacks.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
from psycopg import sql

from websync_dagster_tests.helpers import count, table_snapshot
from websync_dagster_tests.test_cli_reliability import (
    ERROR,
    cli_env,  # noqa: F401 - the fixture, used by name
    error_lines,
    no_stack_trace,
    start_websync,
    wait_for,
    websync,
)
from websync_dagster_tests.test_faults import SyncInThread

SLOW_ROW_S = 0.1
READER = "websync_test_reader"
READER_PASSWORD = "reader-Secret-5d1e"
#: dev's statements ``{slowed}`` on web_pages take SLOW_ROW_S per row while websync_test_knob.slow is true
#: (read in the export's snapshot: a change applies to the exports started after it)
SLOW_EXPORT = """
CREATE TABLE websync_test_knob (slow boolean NOT NULL);
INSERT INTO websync_test_knob VALUES (true);
CREATE FUNCTION websync_test_slow() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF current_query() {slowed} AND (SELECT slow FROM websync_test_knob) THEN
    PERFORM pg_sleep({delay});
  END IF;
  RETURN true;
END $$;
ALTER TABLE web_pages ENABLE ROW LEVEL SECURITY;
CREATE POLICY websync_test_slow ON web_pages FOR SELECT USING (websync_test_slow());
"""
#: the export's COPY (its rows flow slowly), or the statements finding the delta before it
THE_COPY, THE_DELTA = "ILIKE 'copy (select%'", "NOT ILIKE 'copy%'"
#: commit units of one second: prod holds some of web_pages when the signal comes
UNITS = {"WEBSYNC_COMMIT_EVERY_S": "1"}
KEPT = re.compile(r"^web_pages: interrupted; the unit in flight was rolled back, (\d+) rows committed before stay; "
                  r"the next run ships only what prod lacks$")


def slow_dev_url(sync_env, slowed: str = THE_COPY) -> str:
    """dev's URL as a role that row security applies to, with dev's ``slowed`` statements on web_pages slow."""
    with sync_env.dev() as dev:
        exists = dev.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [READER]).fetchone()
        if not exists:
            dev.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(READER), sql.Literal(READER_PASSWORD)))
        dev.execute(SLOW_EXPORT.format(delay=SLOW_ROW_S, slowed=slowed))
        dev.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(READER)))
    parts = urlsplit(sync_env.dev_url)
    return urlunsplit(parts._replace(netloc=f"{READER}:{READER_PASSWORD}@{parts.hostname}:{parts.port}"))


def dev_copies(sync_env, statements: str = "copy (select%") -> list[int]:
    """websync's sessions on dev running a statement of web_pages like ``statements``: its COPY by default."""
    with sync_env.dev() as dev:
        return [r[0] for r in dev.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'websync%%' "
            "AND state = 'active' AND query ILIKE %s", [f"{statements}web_pages%"])]


def prod_pages(sync_env) -> int:
    with sync_env.prod() as prod:
        return count(prod, "web_pages")


def mid_table(sync_env, rows_before: int) -> bool:
    """dev's COPY of web_pages runs and prod has committed some of its rows."""
    return bool(dev_copies(sync_env)) and prod_pages(sync_env) > rows_before


def pages_landing(sync_env) -> set[str]:
    """The dev web_pages rows a sync lands in the test's prod (not the one prod has, nor the one clashing on
    another key, nor those prod rejects)."""
    with sync_env.dev() as dev:
        ids = {r[0] for r in dev.execute("SELECT id::text FROM web_pages")}
    facts = sync_env.facts
    return ids - set(facts.already_in_prod["web_pages"]) - {facts.clash_other_key["web_pages"]} - set(facts.rejected)


def assert_every_row_landed_once(sync_env, before: dict[str, str], landing: set[str]) -> None:
    """prod's rows are untouched, every row to land is there, once, and nothing else."""
    with sync_env.prod() as prod:
        after = table_snapshot(prod, "web_pages")
        dupes = prod.execute("SELECT count(*) FROM (SELECT web_source_id, url_hash FROM web_pages "
                             "GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
    assert {i: after[i] for i in before} == before
    assert set(after) - set(before) == landing
    assert dupes == 0


def sync_signalled_when(env: dict[str, str], tmp_path, ready: Callable[[], object], what: str,
                        signum: int) -> tuple[int, float, str]:
    """``websync sync`` sent ``signum`` once ``ready()``: its exit code, seconds from signal to exit, stderr."""
    err = tmp_path / "sync.err"
    proc = start_websync(env, "sync", stderr=err)
    try:
        wait_for(ready, what, 60)
        sent = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, took, err.read_text()


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_table_ends_the_run_at_once_and_says_what_prod_kept(
        cli_env, sync_env, tmp_path, signum, status):  # noqa: F811 - the fixture imported above
    landing = pages_landing(sync_env)
    with sync_env.prod() as prod:
        before = table_snapshot(prod, "web_pages")
    env = {**cli_env, **UNITS, "WEBSYNC_DEV_URL": slow_dev_url(sync_env)}
    code, took, stderr = sync_signalled_when(
        env, tmp_path, lambda: mid_table(sync_env, len(before)), "web_pages half loaded while dev exports it", signum)
    print(stderr)
    print(f"exited {took:.2f} s after the signal")
    assert not dev_copies(sync_env), "dev still sends web_pages"
    assert took < 3, stderr
    assert code == status, stderr
    assert no_stack_trace(stderr), stderr
    [line] = error_lines(stderr)
    kept = KEPT.match(line.removeprefix(f"{ERROR} "))
    assert kept, line
    assert 0 < int(kept[1]) == prod_pages(sync_env) - len(before) < len(landing)
    assert not list(sync_env.export_dir.rglob("*.partial"))  # the cancelled export's file, of no use
    done = websync(cli_env, "sync", "--quiet", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_every_row_landed_once(sync_env, before, landing)


def _terminate_prod_sessions(sync_env) -> int:
    with sync_env.prod() as prod:
        return len(prod.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE "
                                "datname = current_database() AND application_name LIKE 'websync%'").fetchall())


def test_a_lost_link_mid_export_cancels_it_and_the_retry_starts_at_once(sync_env):
    """The link to prod breaks while dev still sends web_pages: dev's COPY is cancelled (rather than sent to
    its end), the run reconnects within a few seconds, and its new export (dev's connection usable again)
    ships the rest."""
    landing = pages_landing(sync_env)
    with sync_env.prod() as prod:
        before = table_snapshot(prod, "web_pages")
    settings = sync_env.settings(**UNITS, WEBSYNC_DEV_URL=slow_dev_url(sync_env))
    sync = SyncInThread(settings)
    wait_for(lambda: mid_table(sync_env, len(before)), "web_pages half loaded while dev exports it", 60)
    with sync_env.dev() as dev:  # the retry's export is not slowed
        dev.execute("UPDATE websync_test_knob SET slow = false")
    assert _terminate_prod_sessions(sync_env) >= 1
    cut = time.monotonic()
    wait_for(lambda: any("reconnecting in" in line for line in sync.reports), "the run to reconnect", 60)
    waited = time.monotonic() - cut
    print(f"reconnecting {waited:.2f} s after the cut")
    assert waited < 3, sync.reports
    sync.join(60)
    assert all(run.landed for run in sync.runs.values()), {t: r.error for t, r in sync.runs.items()}
    assert_every_row_landed_once(sync_env, before, landing)



def test_ctrl_c_while_dev_finds_the_delta_ends_the_run_at_once(cli_env, sync_env, tmp_path):  # noqa: F811
    """Before its file opens, the export is dev's statements finding the rows prod lacks: cancelled too."""
    landing = pages_landing(sync_env)
    with sync_env.prod() as prod:
        before = table_snapshot(prod, "web_pages")
    env = {**cli_env, "WEBSYNC_DEV_URL": slow_dev_url(sync_env, THE_DELTA)}
    code, took, stderr = sync_signalled_when(
        env, tmp_path, lambda: dev_copies(sync_env, "select%"), "dev to look for the web_pages rows prod lacks",
        signal.SIGINT)
    print(f"exited {took:.2f} s after the signal")
    assert not dev_copies(sync_env, "%"), "dev still runs the export's statements"
    assert took < 3 and code == 130, stderr
    assert error_lines(stderr) == [f"{ERROR} web_pages: interrupted; the unit in flight was rolled back, 0 rows "
                                   "committed before stay; the next run ships only what prod lacks"], stderr
    done = websync(cli_env, "sync", "--quiet", timeout=120)  # as dev's superuser: not slowed
    assert done.returncode == 0, done.stderr[-3000:]
    assert_every_row_landed_once(sync_env, before, landing)
