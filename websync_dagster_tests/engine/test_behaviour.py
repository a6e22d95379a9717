"""The sync's behaviour contract, against real PostgreSQL servers (issue: the sync itself).

Runs through ``prod_via``: the same tests for every transport.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import psycopg
import pytest

from websync_dagster.core.errors import TableSyncError
from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.export_load import run_export, run_load
from websync_dagster_tests.helpers import LoadInThread, count, rows_by_id, sync_all, table_snapshot

TABLES = ["web_sources", "knowledge_base", "web_pages", "web_files"]


def test_insert_only_on_every_unique_key(sync_env, prod_via):
    facts = sync_env.facts
    with sync_env.prod() as prod:
        before = {t: table_snapshot(prod, t) for t in TABLES}
    outcomes = sync_all(prod_via(sync_env))
    with sync_env.prod() as prod:
        after = {t: table_snapshot(prod, t) for t in TABLES}
    for table in TABLES:
        # every row prod had is still there, byte for byte (the guard triggers also forbid UPDATE/DELETE)
        assert {i: after[table][i] for i in before[table]} == before[table], table
        result = outcomes[table].result
        assert result.after == len(after[table])
        assert result.before == facts.prod_counts[table]
        assert result.already_present == len(facts.already_in_prod[table])
    assert outcomes["web_sources"].result.skipped == {"web_sources_base_url_key": 1}
    assert outcomes["web_pages"].result.skipped == {"web_pages_web_source_id_url_hash_key": 1}
    assert outcomes["web_files"].result.skipped == {"web_files_web_page_id_url_key": 1}
    with sync_env.prod() as prod:
        for table, dev_id in facts.clash_other_key.items():
            assert dev_id not in after[table], f"{table}: the clashing dev row must not land under its dev id"
        title = prod.execute("SELECT name FROM web_sources WHERE id = %s", [facts.already_in_prod["web_sources"][0]])
        assert title.fetchone()[0] == "Nom modifié en prod"


def test_columns_matched_by_name(sync_env, prod_via):
    outcomes = sync_all(prod_via(sync_env))
    plan = outcomes["web_pages"].plan
    assert plan.dev_only == ("crawl_debug",)
    assert plan.prod_only == ("ai_summary_status",)
    assert outcomes["web_sources"].plan.dev_only == ("category",)
    assert outcomes["knowledge_base"].plan.prod_only == ("doc_type",)
    assert [str(m) for m in outcomes["knowledge_base"].plan.type_mismatches] == [
        "embedding: dev vector, prod vector(768)"
    ]
    page_id = sync_env.facts.tricky_page_id
    with sync_env.dev() as dev, sync_env.prod() as prod:
        shipped = list(plan.shipped)
        assert rows_by_id(prod, "web_pages", [page_id], shipped) == rows_by_id(dev, "web_pages", [page_id], shipped)
        status = prod.execute("SELECT ai_summary_status FROM web_pages WHERE id = %s", [page_id]).fetchone()[0]
        assert status == "pending"  # prod-only column got its default
        doc_type = prod.execute("SELECT count(*) FROM knowledge_base WHERE doc_type IS NULL").fetchone()[0]
        assert doc_type == 0  # prod's own trigger ran on every inserted document


def test_prod_only_not_null_column_without_default_is_refused(sync_env, prod_via):
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        prod.execute("ALTER TABLE web_files ADD COLUMN checksum_algo text NOT NULL DEFAULT 'sha256'")
        prod.execute("ALTER TABLE web_files ALTER COLUMN checksum_algo DROP DEFAULT")
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")
        before = table_snapshot(prod, "web_files")
    settings = prod_via(sync_env)
    with pytest.raises(TableSyncError) as err:
        run_export(settings, "web_files", scope="delta")
    message = str(err.value)
    assert "web_files" in message and "checksum_algo" in message and "NOT NULL" in message
    assert "\n" not in message
    with sync_env.prod() as prod:
        assert table_snapshot(prod, "web_files") == before


def test_only_missing_rows_are_shipped_and_a_rerun_inserts_nothing(sync_env, prod_via):
    settings = prod_via(sync_env)
    with sync_env.prod() as prod:
        prod_before = {t: set(table_snapshot(prod, t)) for t in TABLES}
    first = sync_all(settings)
    for table, outcome in first.items():
        export = outcome.export
        assert export.scope == "delta"
        with open(export.path, encoding="utf-8", newline="") as f:
            shipped_ids = [row["id"] for row in csv.DictReader(f)]
        assert len(shipped_ids) == export.rows
        assert not set(shipped_ids) & prod_before[table], f"{table}: an id prod had was shipped"
        assert export.rows == export.dev_rows - export.already_in_prod - sum(export.clashes.values())
    # rows prod refused are retried on each run (prod may have been fixed); drop them from dev
    with sync_env.dev() as dev:
        for outcome in first.values():
            if outcome.result.reject_file:
                ids = [json.loads(line)["id"] for line in Path(outcome.result.reject_file).read_text().splitlines()]
                dev.execute(f"DELETE FROM {outcome.plan.table} WHERE id = ANY(%s::uuid[])", [ids])
    second = sync_all(settings)
    for table, outcome in second.items():
        assert outcome.export.rows == 0, table
        assert outcome.result.inserted == 0, table
        assert outcome.result.bytes == 0, table
        assert outcome.result.before == outcome.result.after == first[table].result.after


def test_advisory_lock_serialises_loads(sync_env, prod_via):
    settings = prod_via(sync_env)
    export = run_export(settings, "web_sources", scope="delta")
    with sync_env.prod() as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('websync:web_sources', 0))")
        loader = LoadInThread(settings, "web_sources", export)
        deadline = time.time() + 20
        waiting = 0
        while time.time() < deadline and not waiting:
            waiting = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]
            time.sleep(0.1)
        assert waiting == 1, "the second sync must wait for the lock"
        assert not loader.done.is_set()
        assert count(holder, "web_sources") == sync_env.facts.prod_counts["web_sources"]
        holder.execute("COMMIT")
    assert loader.done.wait(30)
    assert not loader.errors


def test_a_failure_rolls_the_table_back_and_names_it(sync_env, prod_via):
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        prod.execute(
            "CREATE FUNCTION fail_on_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.url LIKE '%page/150' THEN RAISE EXCEPTION 'disk full while writing page 150' "
            "USING ERRCODE = 'disk_full'; END IF; "  # not a refusal of the row (that is a reject): a failure
            "RETURN NEW; END $$"
        )
        prod.execute(
            "CREATE TRIGGER fail_on_row BEFORE INSERT ON web_pages FOR EACH ROW EXECUTE FUNCTION fail_on_row()"
        )
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")
        before = table_snapshot(prod, "web_pages")
    settings = prod_via(sync_env)
    run_load(settings, "web_sources", run_export(settings, "web_sources", scope="delta"), declared_deps=DECLARED_DEPS)
    run_load(settings, "knowledge_base", run_export(settings, "knowledge_base", scope="delta"),
             declared_deps=DECLARED_DEPS)
    export = run_export(settings, "web_pages", scope="delta")
    with pytest.raises(TableSyncError) as err:
        run_load(settings, "web_pages", export, declared_deps=DECLARED_DEPS)
    assert str(err.value).startswith("web_pages: ")
    assert "disk full while writing page 150" in str(err.value)
    with sync_env.prod() as prod:
        assert table_snapshot(prod, "web_pages") == before


def test_references_to_absent_rows_are_nulled_or_rejected(sync_env, prod_via):
    facts = sync_env.facts
    outcomes = sync_all(prod_via(sync_env))
    assert outcomes["web_sources"].result.nulled == {"created_by": 1}
    assert outcomes["knowledge_base"].result.nulled == {"uploaded_by": 1, "bulk_import_id": 1}
    with sync_env.prod() as prod:
        for dev_id, column in facts.nulled_refs.items():
            table = "web_sources" if column == "created_by" else "knowledge_base"
            assert prod.execute(f"SELECT {column} FROM {table} WHERE id = %s", [dev_id]).fetchone() == (None,)
        a, b = facts.supersede_pair
        row = prod.execute("SELECT superseded_by_id::text FROM knowledge_base WHERE id = %s", [a]).fetchone()
        assert row == (b,)
        row = prod.execute("SELECT supersedes_id::text FROM knowledge_base WHERE id = %s", [b]).fetchone()
        assert row == (a,)
    rejects = [json.loads(line) for line in Path(outcomes["web_pages"].result.reject_file).read_text().splitlines()]
    orphan = [r for r in rejects if facts.rejected.get(r["id"]) == "web_source_id"]
    assert len(orphan) == 1
    assert "web_source_id references web_sources(id)" in orphan[0]["reason"]


def test_rows_prod_refuses_go_to_the_reject_file(sync_env, prod_via):
    facts = sync_env.facts
    outcomes = sync_all(prod_via(sync_env))
    kb = outcomes["knowledge_base"].result
    expected = {i: why for i, why in facts.rejected.items() if why != "web_source_id"}
    assert kb.rejected == len(expected)
    rejects = {json.loads(line)["id"]: json.loads(line) for line in Path(kb.reject_file).read_text().splitlines()}
    assert set(rejects) == set(expected)
    for dev_id, keyword in expected.items():
        assert keyword in rejects[dev_id]["reason"], rejects[dev_id]["reason"]
        assert rejects[dev_id]["row"]["id"] == dev_id  # the whole row is kept
    assert kb.inserted == facts.dev_counts["knowledge_base"] - len(expected) - 1
    with sync_env.prod() as prod:
        assert count(prod, "knowledge_base") == facts.prod_counts["knowledge_base"] + kb.inserted


def test_default_overrides_make_prod_reindex(sync_env, prod_via):
    facts = sync_env.facts
    outcomes = sync_all(prod_via(sync_env))
    assert outcomes["knowledge_base"].plan.overrides == {"is_indexed": False, "chunk_count": 0}
    with sync_env.prod() as prod:
        new = prod.execute(
            "SELECT count(*) FILTER (WHERE is_indexed OR chunk_count <> 0), count(*) FROM knowledge_base "
            "WHERE id <> ALL(%s::uuid[])", [facts.already_in_prod["knowledge_base"] + facts.prod_only["knowledge_base"]]
        ).fetchone()
        assert new[0] == 0 and new[1] > 0
        kept = prod.execute("SELECT is_indexed, chunk_count FROM knowledge_base WHERE id = %s",
                            [facts.already_in_prod["knowledge_base"][0]]).fetchone()
        assert kept == (True, 7)


def test_values_are_lossless(sync_env, prod_via):
    facts = sync_env.facts
    outcomes = sync_all(prod_via(sync_env))
    with sync_env.dev() as dev, sync_env.prod() as prod:
        tricky = dev.execute("SELECT full_text FROM knowledge_base WHERE id = %s", [facts.tricky_kb_id]).fetchone()[0]
        assert "\n\\.\n" in tricky
        for table, row_id in (("knowledge_base", facts.tricky_kb_id), ("web_pages", facts.tricky_page_id)):
            plan = outcomes[table].plan
            columns = [c for c in plan.shipped if c not in plan.overrides]
            dev_row = rows_by_id(dev, table, [row_id], columns)
            assert dev_row, table
            assert rows_by_id(prod, table, [row_id], columns) == dev_row, table
        # and every inserted page, column by column, as Postgres prints it
        plan = outcomes["web_pages"].plan
        ids = [r[0] for r in prod.execute("SELECT id::text FROM web_pages").fetchall()]
        dev_rows = rows_by_id(dev, "web_pages", ids, list(plan.shipped))
        prod_rows = rows_by_id(prod, "web_pages", ids, list(plan.shipped))
        landed = [i for i in dev_rows if i not in facts.already_in_prod["web_pages"]]
        assert len(landed) == outcomes["web_pages"].result.inserted
        nulled = [i for i in landed if dev_rows[i] != prod_rows[i]
                  and {k for k in dev_rows[i] if dev_rows[i][k] != prod_rows[i][k]} == {"knowledge_base_id"}
                  and prod_rows[i]["knowledge_base_id"] is None
                  and dev_rows[i]["knowledge_base_id"] in facts.rejected]  # a document prod refused
        differing = [i for i in landed if dev_rows[i] != prod_rows[i] and i not in nulled]
        assert differing == []
        assert len(nulled) == outcomes["web_pages"].result.nulled["knowledge_base_id"]


def test_bad_input_gives_one_clear_line(sync_env):
    from websync_dagster.core.errors import SyncError
    from websync_dagster.core.settings import load_settings

    with pytest.raises(SyncError, match="unknown table 'web_page'"):
        load_settings({**sync_env.env, "WEBSYNC_TABLES": "web_sources,web_page"}, env_file=None)
    with pytest.raises(SyncError, match="knowledge_base_chunks is never synced"):
        load_settings({**sync_env.env, "WEBSYNC_TABLES": "knowledge_base_chunks"}, env_file=None)
    with pytest.raises(SyncError, match="WEBSYNC_PROD_URL is not a postgresql:// URL"):
        load_settings({**sync_env.env, "WEBSYNC_PROD_URL": "mysql://x@y/z"}, env_file=None)
    wrong = sync_env.prod_url.replace("prod-Secret-91c2", "not-the-Password")
    settings = load_settings({**sync_env.env, "WEBSYNC_PROD_URL": wrong}, env_file=None)
    with pytest.raises(SyncError) as err:
        run_export(settings, "web_sources", scope="delta")
    message = str(err.value)
    assert "cannot connect to prod database at postgresql://postgres:***@127.0.0.1" in message
    assert "password authentication failed" in message
    assert "not-the-Password" not in message and "\n" not in message
    unreachable = sync_env.prod_url.rsplit("@", 1)[0] + "@127.0.0.1:1/x"
    settings = load_settings({**sync_env.env, "WEBSYNC_PROD_URL": unreachable}, env_file=None)
    with pytest.raises(SyncError, match="cannot connect to prod database at .*127.0.0.1:1"):
        run_export(settings, "web_sources", scope="delta")


def test_declared_order_is_checked_against_prod_foreign_keys(sync_env, prod_via):
    settings = prod_via(sync_env)
    export = run_export(settings, "web_sources", scope="delta")
    wrong = {**DECLARED_DEPS, "web_files": ("web_sources", "knowledge_base")}
    with pytest.raises(Exception, match="web_files references web_pages"):
        run_load(settings, "web_sources", export, declared_deps=wrong)
    with psycopg.connect(sync_env.prod_url) as prod:
        assert count(prod, "web_sources") == sync_env.facts.prod_counts["web_sources"]
