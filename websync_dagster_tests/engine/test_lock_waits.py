"""Every wait for prod's locks is bounded by WEBSYNC_WAIT_S and names who holds the lock (issue 16, item 1):
a migration's table lock, another sync's advisory lock, and prod's own app inserting the same page.
On PostgreSQL 15 (prod's version) through the ``websync`` command, and on every transport."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from dagster import DagsterInstance

from websync_dagster.cli import main as websync_main
from websync_dagster.engine import lock_wait
from websync_dagster_tests.helpers import count, sync_all

WAIT_S = 6


@pytest.fixture(autouse=True)
def _look_early(monkeypatch):
    """The watcher's first look at ~10 s, brought to 2 s so that a short bound keeps the test short."""
    monkeypatch.setattr(lock_wait, "FIRST_LOOK_S", 2.0)


@contextmanager
def holding(url: str, *statements: str, application: str) -> Iterator[int]:
    """A prod session of another program holding what ``statements`` take, in an open transaction; its pid."""
    with psycopg.connect(url, application_name=application) as holder:
        for statement in statements:
            holder.execute(statement)
        yield holder.info.backend_pid
        holder.rollback()


def test_a_migrations_table_lock_is_waited_for_bounded_and_named(sync_env15, capsys, monkeypatch):
    monkeypatch.setenv("WEBSYNC_WAIT_S", str(WAIT_S))
    facts = sync_env15.facts
    with holding(sync_env15.prod_url, "LOCK TABLE web_pages IN SHARE MODE", application="migrate") as pid:
        started = time.monotonic()
        code = websync_main(["sync", "--env-file", "/dev/null"])
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1, err
    waiting = [line for line in err.splitlines() if "web_pages: waiting for a lock on prod held by" in line]
    assert len(waiting) == 1, err
    assert f"pid {pid} (application 'migrate', user postgres, since " in waiting[0]
    assert "LOCK TABLE web_pages IN SHARE MODE" in waiting[0]
    failed = [line for line in err.splitlines() if line.startswith("websync: error: web_pages:")]
    assert len(failed) == 1 and f"waited {WAIT_S} s (WEBSYNC_WAIT_S) for a lock on prod held by pid {pid}" in failed[0]
    assert "websync: error: web_files: not loaded: web_pages did not land in prod" in err
    assert elapsed < 60
    instance = DagsterInstance.from_config(str(sync_env15.dagster_home))  # the same wait in the run's log
    run = instance.get_runs(limit=1)[0]
    logged = [entry.user_message for entry in instance.all_logs(run.run_id)]
    assert any(f"web_pages: waiting for a lock on prod held by pid {pid} " in m for m in logged)
    with sync_env15.prod() as prod:
        assert count(prod, "web_pages") == facts.prod_counts["web_pages"]
        assert count(prod, "knowledge_base") > facts.prod_counts["knowledge_base"]  # the others landed


def test_another_syncs_advisory_lock_is_waited_for_bounded_and_named(sync_env15, capsys, monkeypatch):
    monkeypatch.setenv("WEBSYNC_WAIT_S", str(WAIT_S))
    lock = "SELECT pg_advisory_xact_lock(hashtextextended('websync:web_files', 0))"
    with holding(sync_env15.prod_url, lock, application="psql") as pid:
        code = websync_main(["sync", "--env-file", "/dev/null", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"websync: error: web_files: waited {WAIT_S} s (WEBSYNC_WAIT_S) for a lock on prod held by pid {pid} " \
           f"(application 'psql'" in err
    with sync_env15.prod() as prod:
        assert count(prod, "web_pages") > sync_env15.facts.prod_counts["web_pages"]


def test_prods_own_app_inserting_the_same_page_during_the_sync(sync_env15):
    """The app inserts, in a transaction still open, a page dev also has: websync's insert waits for it,
    then leaves prod's row as it is (already present) and lands the rest."""
    with sync_env15.prod() as prod:
        in_prod = [r[0] for r in prod.execute("SELECT id FROM web_pages").fetchall()]
        source = prod.execute("SELECT id::text FROM web_sources ORDER BY id LIMIT 1").fetchone()[0]
    with sync_env15.dev() as dev:
        page = dev.execute("SELECT id::text FROM web_pages WHERE NOT id = ANY(%s) ORDER BY url DESC LIMIT 1",
                           [in_prod]).fetchone()[0]
    insert = ("INSERT INTO web_pages (id, web_source_id, url, url_hash, title) VALUES "
              f"('{page}', '{source}', 'https://app.example.tn/own', 'app-own-hash', 'the app''s own')")
    settings = sync_env15.settings(WEBSYNC_WAIT_S="60")
    with psycopg.connect(sync_env15.prod_url, application_name="app") as app:
        app.execute(insert)
        committer = threading.Timer(3.0, app.commit)
        committer.start()
        outcomes = sync_all(settings)
        committer.join()
    pages = outcomes["web_pages"].result
    assert pages.lost == 0
    with sync_env15.prod() as prod:
        assert prod.execute("SELECT title FROM web_pages WHERE id = %s", [page]).fetchone()[0] == "the app's own"
    assert pages.already_present >= 1


def test_a_table_lock_is_bounded_on_every_transport(sync_env, prod_via, monkeypatch):
    settings = prod_via(sync_env).model_copy(update={"wait_s": 3})
    with holding(sync_env.prod_url, "LOCK TABLE web_sources IN SHARE MODE", application="migrate") as pid:
        started = time.monotonic()
        with pytest.raises(Exception) as failed:
            sync_all(settings)
        elapsed = time.monotonic() - started
    assert "web_sources: waited 3 s (WEBSYNC_WAIT_S) for a lock on prod held by " in str(failed.value)
    assert f"pid {pid}" in str(failed.value)
    assert elapsed < 30
