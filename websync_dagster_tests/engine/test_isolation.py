"""Isolation of a run (issue 9): one table's planning problem stops only that table and the tables that
depend on it; every file a run writes is its own; a load materialised alone reports what prod holds.

Real servers, through the real Dagster job where the brief is about what the user sees.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from websync_dagster.cli.results import failures
from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.definitions import defs
from websync_dagster_tests.conftest import fresh_database
from websync_dagster_tests.helpers import count, sync_all

TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")


def _instance(sync_env) -> DagsterInstance:
    return DagsterInstance.from_config(str(sync_env.dagster_home))


def _run_websync_job(sync_env):
    return defs().resolve_job_def("websync_job").execute_in_process(instance=_instance(sync_env), raise_on_error=False)


def _prod_meta(result, table: str) -> dict | None:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == AssetKey([table, "prod_upserted"]):
            return {k: v.value for k, v in materialization.metadata.items()}
    return None


def _prod_ddl(sync_env, *statements: str) -> None:
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        for statement in statements:
            prod.execute(statement)
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")


def _assert_landed(sync_env, result, tables: tuple[str, ...]) -> None:
    with sync_env.prod() as prod:
        for table in tables:
            meta = _prod_meta(result, table)
            assert meta is not None, f"{table} did not land"
            assert meta["prod_rows_after"] == count(prod, table) > sync_env.facts.prod_counts[table], table


# --- item 2: a planning problem stops only its table and its dependents ---------------------------------

def test_a_prod_not_null_column_without_default_stops_only_web_files(sync_env):
    _prod_ddl(sync_env, "ALTER TABLE web_files ADD COLUMN checksum_algo text NOT NULL DEFAULT 'sha256'",
              "ALTER TABLE web_files ALTER COLUMN checksum_algo DROP DEFAULT")
    result = _run_websync_job(sync_env)
    assert not result.success
    lines = failures(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("web_files: prod column checksum_algo (text) is NOT NULL without a default")
    _assert_landed(sync_env, result, ("web_sources", "knowledge_base", "web_pages"))
    assert _prod_meta(result, "web_files") is None
    with sync_env.prod() as prod:
        assert count(prod, "web_files") == sync_env.facts.prod_counts["web_files"]


def test_an_override_for_a_column_prod_lacks_is_skipped_with_a_warning(sync_env):
    _prod_ddl(sync_env, "ALTER TABLE knowledge_base DROP COLUMN chunk_count")
    result = _run_websync_job(sync_env)
    assert result.success, failures(result)
    _assert_landed(sync_env, result, TABLES)
    kb = _prod_meta(result, "knowledge_base")
    assert kb["overrides"] == {"is_indexed": "False"}
    assert kb["overrides_skipped"] == ["chunk_count: prod has no such column"]
    assert kb["warnings"] == ["override of chunk_count skipped: prod has no such column"]
    warnings = [e.message for e in _instance(sync_env).all_logs(result.run_id)
                if e.level >= 30 and "chunk_count" in (e.message or "")]
    assert warnings == ["knowledge_base: override of chunk_count skipped: prod has no such column"]
    with sync_env.prod() as prod:
        indexed = prod.execute("SELECT count(*) FROM knowledge_base WHERE is_indexed").fetchone()[0]
        assert indexed <= sync_env.facts.prod_counts["knowledge_base"]  # the other override still applied


def test_a_table_missing_in_dev_stops_only_that_table(sync_env):
    with sync_env.dev() as dev:
        dev.execute("DROP TABLE web_files CASCADE")
    result = _run_websync_job(sync_env)
    assert not result.success
    assert failures(result) == ["web_files: table not found in the dev database"]
    _assert_landed(sync_env, result, ("web_sources", "knowledge_base", "web_pages"))


def test_a_table_missing_in_prod_stops_it_and_its_dependents(sync_env):
    _prod_ddl(sync_env, "DROP TABLE web_pages CASCADE")
    result = _run_websync_job(sync_env)
    assert not result.success
    assert failures(result) == ["web_pages: table not found in the prod database",
                                "web_files: not loaded: web_pages did not land in prod"]
    _assert_landed(sync_env, result, ("web_sources", "knowledge_base"))


# --- item 5: every file a run writes is its own -----------------------------------------------------------

def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_two_syncs_sharing_an_export_dir_write_their_own_files(sync_env):
    settings = sync_env.settings()
    start = threading.Barrier(2)
    outcomes: list[dict] = []
    errors: list[BaseException] = []

    def sync() -> None:
        start.wait()
        try:
            outcomes.append(sync_all(settings))
        except BaseException as exc:  # noqa: BLE001 - examined below
            errors.append(exc)

    threads = [threading.Thread(target=sync) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, [str(e) for e in errors]
    assert len(outcomes) == 2
    for table in TABLES:
        first, second = (o[table] for o in outcomes)
        assert first.export.path != second.export.path, table
        for outcome in (first, second):
            assert _sha256(outcome.export.path) == outcome.export.sha256, table  # nobody wrote into it
        rejects = [o.result.reject_file for o in (first, second) if o.result.reject_file]
        assert len(set(rejects)) == len(rejects), table
    with sync_env.prod() as prod:
        assert sum(o[t].result.inserted for o in outcomes for t in TABLES) == sum(
            count(prod, t) - sync_env.facts.prod_counts[t] for t in TABLES)
    assert not list(sync_env.export_dir.rglob("*.partial"))


def test_a_file_at_the_target_path_is_never_overwritten(sync_env):
    from websync_dagster.engine.context import SyncContext
    from websync_dagster.engine.run import run_tables

    run_id = "0123abcd-run-reused"
    settings = sync_env.settings()
    sync_env.export_dir.mkdir(parents=True, exist_ok=True)
    taken = sync_env.export_dir / f"web_sources_{run_id}.csv"
    taken.write_text("precious\n")
    with SyncContext(settings) as ctx:
        runs = {r.table: r for r in run_tables(ctx, export=TABLES, load=TABLES, declared_deps=DECLARED_DEPS,
                                               run_id=run_id)}
    assert taken.read_text() == "precious\n"
    error = str(runs["web_sources"].error)
    assert error.startswith("web_sources: export failed: FileExistsError") and str(taken) in error
    assert "\n" not in error
    assert str(runs["web_pages"].error) == "web_pages: not loaded: web_sources did not land in prod"
    assert runs["knowledge_base"].landed
    with sync_env.prod() as prod:
        assert count(prod, "web_sources") == sync_env.facts.prod_counts["web_sources"]
    assert not list(sync_env.export_dir.rglob("*.partial"))


def test_run_files_carry_the_dagster_run_id(sync_env):
    result = _run_websync_job(sync_env)
    assert result.success, failures(result)
    for table in TABLES:
        meta = _prod_meta(result, table)
        assert Path(meta["export_path"]).name == f"{table}_{result.run_id}.csv"
    kb = _prod_meta(result, "knowledge_base")
    assert Path(kb["reject_file"]).name == f"knowledge_base_{result.run_id}.rejects.jsonl"


# --- item 10: a load materialised alone reports what prod holds -----------------------------------------

def _dev_ids_in_prod(sync_env, table: str) -> int:
    with sync_env.dev() as dev, sync_env.prod() as prod:
        dev_ids = {r[0] for r in dev.execute(f"SELECT id FROM {table}").fetchall()}
        prod_ids = {r[0] for r in prod.execute(f"SELECT id FROM {table}").fetchall()}
    return len(dev_ids & prod_ids)


def _materialize_alone(sync_env, key: AssetKey):
    job = defs().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=_instance(sync_env), asset_selection=[key], raise_on_error=False)


def test_a_load_materialised_alone_after_dev_grew_ships_the_new_rows(sync_env):
    assert _run_websync_job(sync_env).success
    with sync_env.dev() as dev:
        for n in range(3):
            dev.execute("INSERT INTO web_sources (name, base_url, categories) VALUES (%s, %s, %s)",
                        [f"new {n}", f"https://new-{n}.example.tn", ["legislation"]])
    with sync_env.prod() as prod:
        before = count(prod, "web_sources")
    present = _dev_ids_in_prod(sync_env, "web_sources")
    result = _materialize_alone(sync_env, AssetKey(["web_sources", "prod_upserted"]))
    assert result.success, failures(result)
    meta = _prod_meta(result, "web_sources")
    with sync_env.prod() as prod:
        after = count(prod, "web_sources")
    assert after == before + 3
    assert meta["prod_rows_before"] == before and meta["prod_rows_after"] == after
    assert meta["inserted"] == 3 and meta["already_present"] == present
    assert meta["export_reexported"] is True
    logs = [e.message for e in _instance(sync_env).all_logs(result.run_id)]
    assert any("web_sources/export was not selected" in (m or "") for m in logs)


def test_a_load_materialised_alone_against_another_prod_state_reports_it(sync_env, servers, monkeypatch):
    """The recorded export was made against one prod; prod is now another (restored from a backup)."""
    assert _run_websync_job(sync_env).success
    exported = _materialize_alone(sync_env, AssetKey(["web_sources", "export"]))
    assert exported.success
    restored = fresh_database(servers.prod, f"{sync_env.prod_url.rsplit('/', 1)[1]}_restored")
    monkeypatch.setenv("WEBSYNC_PROD_URL", restored)
    sync_env.prod_url = restored
    before = sync_env.facts.prod_counts["web_sources"]
    present = _dev_ids_in_prod(sync_env, "web_sources")
    result = _materialize_alone(sync_env, AssetKey(["web_sources", "prod_upserted"]))
    assert result.success, failures(result)
    meta = _prod_meta(result, "web_sources")
    with sync_env.prod() as prod:
        after = count(prod, "web_sources")
    assert meta["prod_rows_before"] == before and meta["prod_rows_after"] == after
    assert meta["inserted"] == after - before > 0
    assert meta["already_present"] == present
