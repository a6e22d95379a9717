"""Undo is exact (issue 18): over random runs that insert rows and update rows newer in dev (and leave alone rows
prod holds newer), ``undo`` brings prod back to the checksums it had before the run, and undoing the undo brings
back the run's result. On web_files, which no prod trigger rewrites (web_pages' BEFORE UPDATE trigger sets
updated_at, also when a row is restored: test_update_newer.py checks it apart)."""

from __future__ import annotations

import itertools
import os

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from websync_dagster.core.settings import load_settings
from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run import run_tables
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.undo.apply import undo_run
from websync_dagster_tests.conftest import fresh_database
from websync_dagster_tests.helpers import sync_all
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard, checksum, edit_in_prod, ids_of, recrawl

TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")
_n = itertools.count()

NEW_FILES = """
INSERT INTO web_files SELECT (jsonb_populate_record(NULL::web_files, to_jsonb(f) || jsonb_build_object(
    'id', gen_random_uuid(), 'url', f.url || '#copy' || g, 'updated_at', now()))).*
FROM (SELECT * FROM web_files ORDER BY id LIMIT %s) AS f, generate_series(1, 1) AS g
"""


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inserted=st.integers(0, 6), updated=st.integers(0, 6), prod_newer=st.integers(0, 3))
def test_undo_restores_prods_checksums_and_undoing_the_undo_brings_the_run_back(servers, tmp_path, inserted,
                                                                               updated, prod_newer):
    n = next(_n)
    dev_url = fresh_database(servers.dev, f"undo_dev_{os.getpid()}_{n}")
    prod_url = fresh_database(servers.prod, f"undo_prod_{os.getpid()}_{n}")
    env = {"WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url,
           "WEBSYNC_EXPORT_DIR": str(tmp_path / f"exports{n}")}
    sync_all(load_settings(env, env_file=None))
    with psycopg.connect(dev_url, autocommit=True) as dev:
        changed = ids_of(dev, "web_files", updated + prod_newer, offset=3)
        recrawl(dev, "web_files", changed, "text_content", f"re-read {n} ")
        dev.execute("UPDATE web_files SET updated_at = now() WHERE id = ANY(%s::uuid[])", [changed])
        if inserted:
            dev.execute(NEW_FILES, [inserted])
    edit_in_prod(prod_url, "web_files", changed[updated:], "text_content", "prod's own ")
    with psycopg.connect(prod_url, autocommit=True) as prod:
        before = {t: checksum(prod, t) for t in TABLES}
    arm_allowing_guard(prod_url)
    allow(prod_url, "web_files", "UPDATE", changed[:updated])
    settings_ = load_settings({**env, "WEBSYNC_UPDATE_NEWER": "web_files"}, env_file=None)
    run_id = new_run_id()
    with SyncContext(settings_) as ctx:
        runs = {r.table: r for r in run_tables(ctx, export=TABLES, load=TABLES, declared_deps=DECLARED_DEPS,
                                               run_id=run_id)}
    assert all(r.error is None for r in runs.values())
    assert (runs["web_files"].load.result.inserted, runs["web_files"].update.updated) == (inserted, updated)
    assert runs["web_files"].update.prod_newer_kept == prod_newer
    with psycopg.connect(prod_url, autocommit=True) as prod:
        after = {t: checksum(prod, t) for t in TABLES}
        new_ids = [r[0] for r in prod.execute("SELECT id::text FROM web_files WHERE url LIKE %s",
                                              ["%#copy%"]).fetchall()]
    allow(prod_url, "web_files", "DELETE", new_ids)
    undo_id = new_run_id()
    with SyncContext(settings_) as ctx:
        undone = {t.table: t for t in undo_run(ctx, run_id, undo_run_id=undo_id)}
    if inserted or updated:
        assert (undone["web_files"].deleted, undone["web_files"].restored) == (inserted, updated)
    with psycopg.connect(prod_url, autocommit=True) as prod:
        assert {t: checksum(prod, t) for t in TABLES} == before
    if not (inserted or updated):
        return
    with SyncContext(settings_) as ctx:
        redone = {t.table: t for t in undo_run(ctx, undo_id, undo_run_id=new_run_id())}
    assert (redone["web_files"].inserted, redone["web_files"].restored) == (inserted, updated)
    with psycopg.connect(prod_url, autocommit=True) as prod:
        assert {t: checksum(prod, t) for t in TABLES} == after
