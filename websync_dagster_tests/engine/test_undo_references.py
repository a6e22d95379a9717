"""Undo of a run that inserted rows referencing each other (the sample's pair of documents, one superseding the
other): both go, since every row referencing them goes too; a row a staying prod row references stays. Real
servers."""

from __future__ import annotations

import psycopg

from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.undo.apply import undo_run
from websync_dagster_tests.engine.test_update_faults import _sync
from websync_dagster_tests.helpers import table_snapshot
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard

TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")


def _undo(sync_env, run_id: str) -> dict:
    with SyncContext(sync_env.settings()) as ctx:
        return {r.table: r for r in undo_run(ctx, run_id, undo_run_id=new_run_id())}


def _pair(sync_env) -> tuple[str, str]:
    with sync_env.dev() as dev:
        return dev.execute("SELECT id::text, supersedes_id::text FROM knowledge_base "
                           "WHERE supersedes_id IS NOT NULL").fetchone()


def test_undo_of_a_full_sync_takes_back_documents_that_reference_each_other(sync_env):
    newer, older = _pair(sync_env)
    with sync_env.prod() as prod:
        before = {t: table_snapshot(prod, t) for t in TABLES}
    assert newer not in before["knowledge_base"] and older not in before["knowledge_base"]
    run_id, runs = _sync(sync_env.settings())
    assert all(r.error is None for r in runs.values())
    with sync_env.prod() as prod:
        new = {t: sorted(set(table_snapshot(prod, t)) - set(before[t])) for t in TABLES}
    assert {newer, older} <= set(new["knowledge_base"])
    arm_allowing_guard(sync_env.prod_url)
    for table in TABLES:
        allow(sync_env.prod_url, table, "DELETE", new[table])
    results = _undo(sync_env, run_id)
    assert results["knowledge_base"].left == {}
    assert results["knowledge_base"].deleted == len(new["knowledge_base"])
    with sync_env.prod() as prod:
        assert {t: table_snapshot(prod, t) for t in TABLES} == before


def test_a_document_a_staying_prod_row_references_stays_and_so_does_the_one_it_supersedes(sync_env):
    newer, older = _pair(sync_env)
    run_id, runs = _sync(sync_env.settings())
    assert all(r.error is None for r in runs.values())
    with psycopg.connect(sync_env.prod_url, autocommit=True) as prod:  # prod's own document, citing the newer one
        prod.execute("INSERT INTO knowledge_base (id, category, title, supersedes_id) "
                     "VALUES (gen_random_uuid(), 'conventions', 'Prod cites it', %s)", [newer])
    arm_allowing_guard(sync_env.prod_url)
    with sync_env.prod() as prod:
        for table in TABLES:
            allow(sync_env.prod_url, table, "DELETE", list(table_snapshot(prod, table)))
    results = _undo(sync_env, run_id)
    left = results["knowledge_base"].left
    assert left == {newer: "referenced by a knowledge_base row that stays in prod",
                    older: "referenced by a knowledge_base row that stays in prod"}
    with sync_env.prod() as prod:
        assert prod.execute("SELECT count(*) FROM knowledge_base WHERE id = ANY(%s::uuid[])",
                            [[newer, older]]).fetchone()[0] == 2
