"""A ``websync sync`` killed (SIGKILL: nothing of it runs after) while prod commits a unit: prod finishes the commit,
and undo of that run still takes the unit's rows back, since the run's manifest held them before the COMMIT was
sent (engine/run_files.py; issue 18's manifest kill window). Real servers, the real command.

Prod's COMMIT of web_pages is held a few seconds by a deferred constraint trigger that sleeps once per
transaction, so the test kills the process while prod runs that COMMIT."""

from __future__ import annotations

import time

from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run_files import MANIFEST_SUBDIR
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.undo.apply import undo_run
from websync_dagster_tests.helpers import table_snapshot
from websync_dagster_tests.test_cli_reliability import (
    cli_env,  # noqa: F401 - the fixture, used by name
    start_websync,
    wait_for,
)
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard, prod_ddl

COMMIT_S = 4
SLOW_COMMIT = f"""
CREATE FUNCTION websync_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('websync_test.slept', true), '') = '' THEN
    PERFORM set_config('websync_test.slept', 'yes', true);
    PERFORM pg_sleep({COMMIT_S});
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER websync_test_slow_commit AFTER INSERT ON web_pages DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION websync_test_slow_commit();
"""
TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")


def _committing(sync_env) -> bool:
    with sync_env.prod() as prod:
        return bool(prod.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'websync%%' "
                                 "AND query ILIKE '%%COMMIT%%' AND wait_event = 'PgSleep'").fetchone()[0])


def _websync_busy(sync_env) -> bool:
    with sync_env.prod() as prod:
        return bool(prod.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'websync%%' "
                                 "AND state <> 'idle'").fetchone()[0])


def test_a_run_killed_while_prod_commits_a_unit_is_undone_whole(cli_env, sync_env, tmp_path):  # noqa: F811
    with sync_env.prod() as prod:
        before = {t: table_snapshot(prod, t) for t in TABLES}
    prod_ddl(sync_env.prod_url, SLOW_COMMIT)
    proc = start_websync(cli_env, "sync", stderr=tmp_path / "sync.err")
    try:
        wait_for(lambda: _committing(sync_env), "prod to run web_pages' COMMIT", 120)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + COMMIT_S + 30
    while _websync_busy(sync_env) and time.monotonic() < deadline:
        time.sleep(0.2)
    with sync_env.prod() as prod:
        after = {t: table_snapshot(prod, t) for t in TABLES}
    new = {t: sorted(set(after[t]) - set(before[t])) for t in TABLES}
    assert new["web_pages"], "prod committed the unit the killed process sent"
    assert not new["web_files"], "the run was killed before web_files"
    [manifest] = (sync_env.export_dir / MANIFEST_SUBDIR).glob("*.jsonl")
    arm_allowing_guard(sync_env.prod_url)
    for table in TABLES:
        allow(sync_env.prod_url, table, "DELETE", new[table])
    with SyncContext(sync_env.settings()) as ctx:
        results = {r.table: r for r in undo_run(ctx, manifest.stem, undo_run_id=new_run_id())}
    pages = results["web_pages"]
    assert (pages.deleted, pages.left, pages.unrecorded_units) == (len(new["web_pages"]), {}, [])
    with sync_env.prod() as prod:
        assert {t: table_snapshot(prod, t) for t in TABLES} == before
