"""The Dagster surface through its real entry points: `dagster` CLI subprocesses, the `websync` CLI,
the asset graph, and what the instance records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from websync_dagster.cli import main as websync_main
from websync_dagster.cli.args import parse_args
from websync_dagster.definitions import defs
from websync_dagster_tests.conftest import DEV_PASSWORD, PROD_PASSWORD
from websync_dagster_tests.helpers import count

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def _latest_metadata(instance: DagsterInstance, key: AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None, key
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.mark.servers  # a dagster subprocess
def test_definitions_validate():
    proc = subprocess.run([DAGSTER, "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_asset_graph_follows_foreign_keys():
    graph = defs().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for table in ("web_sources", "knowledge_base", "web_pages", "web_files"):
        assert {f"{table}/export", f"{table}/prod_upserted"} <= keys

    def parents(key: str) -> set[str]:
        return {p.to_user_string() for p in graph.get(AssetKey.from_user_string(key)).parent_keys}

    assert parents("web_sources/prod_upserted") == {"web_sources/export"}
    assert parents("web_pages/prod_upserted") == {
        "web_pages/export", "web_sources/prod_upserted", "knowledge_base/prod_upserted"}
    assert parents("web_files/prod_upserted") == {
        "web_files/export", "web_sources/prod_upserted", "knowledge_base/prod_upserted", "web_pages/prod_upserted"}
    for name in ("websync_job", "export_job", "status_job", "diff_job"):
        assert defs().resolve_job_def(name).name == name
    assert defs().resolve_schedule_def("websync_nightly").default_status.value == "STOPPED"
    assert defs().resolve_sensor_def("dev_prod_diff_sensor").name == "dev_prod_diff_sensor"


def test_dagster_job_execute_records_before_and_after(sync_env):
    env = {**os.environ, **sync_env.env}
    proc = subprocess.run([DAGSTER, "job", "execute", "-m", "websync_dagster.definitions", "-j", "websync_job"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert DEV_PASSWORD not in output and PROD_PASSWORD not in output
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    facts = sync_env.facts
    with sync_env.prod() as prod:
        for table in ("web_sources", "knowledge_base", "web_pages", "web_files"):
            meta = _latest_metadata(instance, AssetKey([table, "prod_upserted"]))
            assert meta["prod_rows_before"] == facts.prod_counts[table]
            assert meta["prod_rows_after"] == meta["dagster/row_count"] == count(prod, table)
            assert meta["inserted"] == count(prod, table) - facts.prod_counts[table]
            export = _latest_metadata(instance, AssetKey([table, "export"]))
            assert export["scope"] == "delta" and export["rows"] == meta["shipped"]
            assert len(export["sha256"]) == 64
    kb = _latest_metadata(instance, AssetKey(["knowledge_base", "prod_upserted"]))
    assert kb["rejected"] == 3 and Path(kb["reject_file"]).exists()
    assert kb["prod_only_columns"] == ["doc_type"]
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].job_name == "websync_job"
    checks = instance.event_log_storage.get_asset_check_execution_history(
        __import__("dagster").AssetCheckKey(AssetKey(["knowledge_base", "prod_upserted"]), "no_rejected_rows"), limit=1)
    assert checks and checks[0].evaluation.passed is False  # a warning, and the run still succeeded
    all_text = json.dumps([str(e) for e in instance.all_logs(runs[0].run_id)])
    assert DEV_PASSWORD not in all_text and PROD_PASSWORD not in all_text


def test_cli_sync_prints_the_table_and_exits_zero_with_rejects(sync_env, capsys):
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert "prod before" in lines[0] and "rejected" in lines[0]
    kb = next(line.split() for line in lines if line.strip().startswith("knowledge_base"))
    assert kb[1:4] == ["2", "58", "56"]  # before, after, inserted
    assert kb[6] == "3"  # rejected
    assert DEV_PASSWORD not in out.out + out.err and PROD_PASSWORD not in out.out + out.err
    assert websync_main(["--status", "--env-file", "/dev/null", "--quiet"]) == 0
    status = capsys.readouterr().out
    assert "web_pages" in status and "201" in status
    assert websync_main(["--diff", "--env-file", "/dev/null", "--quiet"]) == 0
    diff = capsys.readouterr().out
    assert "missing_in_prod" in diff


def test_cli_fails_naming_the_table_when_a_table_fails(sync_env, capsys):
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        prod.execute("CREATE FUNCTION no_files() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "RAISE EXCEPTION 'quota exceeded for web_files' "
                     "USING ERRCODE = 'disk_full'; END $$")  # not a row's fault (that is a reject): a failure
        prod.execute("CREATE TRIGGER no_files BEFORE INSERT ON web_files FOR EACH ROW EXECUTE FUNCTION no_files()")
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "websync: error: web_files: load into prod failed: quota exceeded for web_files (SQLSTATE 53100); " \
           "the unit in flight (rows 1-" in err
    assert "of the delta) was rolled back (0 rows committed before stay)" in err
    with sync_env.prod() as prod:
        assert count(prod, "web_files") == sync_env.facts.prod_counts["web_files"]
        assert count(prod, "web_pages") > sync_env.facts.prod_counts["web_pages"]  # the other tables landed


def test_export_job_exports_every_row_without_prod(sync_env, capsys, monkeypatch):
    monkeypatch.setenv("WEBSYNC_PROD_URL", "postgresql://nobody:nothing@127.0.0.1:1/none")
    assert websync_main(["--export", "--env-file", "/dev/null", "--quiet"]) == 0
    out = capsys.readouterr().out
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    for table, n in sync_env.facts.dev_counts.items():
        meta = _latest_metadata(instance, AssetKey([table, "export"]))
        assert meta["scope"] == "all" and meta["rows"] == n
        header = Path(meta["export_path"]).read_text(encoding="utf-8").splitlines()[0]
        assert header.startswith("id,")
        assert table in out
    sources_export = _latest_metadata(instance, AssetKey(["web_sources", "export"]))["export_path"]
    assert "category" in Path(sources_export).read_text(encoding="utf-8")  # dev-only column kept


def test_bad_configuration_is_one_line_and_exit_2(sync_env, capsys, monkeypatch):
    monkeypatch.setenv("WEBSYNC_TABLES", "web_sources,pages")
    assert websync_main(["sync", "--env-file", "/dev/null"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["websync: error: WEBSYNC_TABLES: unknown table 'pages': websync syncs web_sources, "
                   "knowledge_base, web_pages, web_files"]


@pytest.mark.parametrize(("argv", "mode"), [([], "sync"), (["--export"], "export"), (["--status"], "status"),
                                             (["--diff"], "diff"), (["diff"], "diff")])
def test_cli_accepts_the_runbook_flags(argv, mode):
    assert parse_args(argv).mode == mode


def _check(instance: DagsterInstance, table: str, name: str):
    from dagster import AssetCheckKey

    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey([table, "prod_upserted"]), name), limit=1)
    assert history, (table, name)
    return history[0].evaluation


def test_checks_pass_warn_and_block(sync_env, capsys):
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    for table in ("web_sources", "knowledge_base", "web_pages", "web_files"):
        assert _check(instance, table, "all_shipped_rows_in_prod").passed
    pages = _check(instance, "web_pages", "no_dev_column_left_behind")
    assert not pages.passed and pages.severity.value == "WARN"
    assert pages.metadata["dev_only_columns"].value == ["crawl_debug"]
    assert _check(instance, "web_files", "no_dev_column_left_behind").passed
    # a prod that silently drops a row (a trigger returning NULL): the blocking check fails the run
    source = sync_env.facts.already_in_prod["web_sources"][0]
    with sync_env.dev() as dev:
        dev.execute("INSERT INTO web_pages (web_source_id, url, url_hash) VALUES (%s, 'https://x.tn/lost', 'lost')",
                    [source])
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        prod.execute("CREATE FUNCTION swallow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "IF NEW.url_hash = 'lost' THEN RETURN NULL; END IF; RETURN NEW; END $$")
        prod.execute("CREATE TRIGGER swallow BEFORE INSERT ON web_pages FOR EACH ROW EXECUTE FUNCTION swallow()")
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 1
    landed = _check(instance, "web_pages", "all_shipped_rows_in_prod")
    assert not landed.passed and landed.metadata["lost"].value == 1
    assert "all_shipped_rows_in_prod" in capsys.readouterr().err


def test_cli_shows_progress_per_table(sync_env, capsys, monkeypatch):
    monkeypatch.setenv("WEBSYNC_PROGRESS_EVERY_S", "0")
    assert websync_main(["sync", "--env-file", "/dev/null"]) == 0
    err = capsys.readouterr().err
    import re

    assert re.search(r"web_pages load: [\d.]+ of ~[\d.]+ MB \(~\d+ of ~199 rows\), [\d.]+ MB/s", err)
    assert re.search(r"web_pages export: [\d.]+ (of ~[\d.]+ )?MB", err)


def test_a_load_materialised_alone_exports_the_delta_again(sync_env):
    """Any subset of the one multi-asset can be materialised: here the export, then its load on its own,
    which exports again what prod lacks now (an earlier export may predate prod's state)."""
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    job = defs().resolve_implicit_global_asset_job_def()
    before = sync_env.facts.prod_counts["web_sources"]
    exported = job.execute_in_process(instance=instance, asset_selection=[AssetKey(["web_sources", "export"])])
    assert exported.success
    with sync_env.prod() as prod:
        assert count(prod, "web_sources") == before
    export = _latest_metadata(instance, AssetKey(["web_sources", "export"]))
    Path(export["export_path"]).unlink()  # the load does not need the earlier file
    loaded = job.execute_in_process(instance=instance, asset_selection=[AssetKey(["web_sources", "prod_upserted"])])
    assert loaded.success
    materialized = {e.asset_key.to_user_string() for e in loaded.get_asset_materialization_events()}
    assert materialized == {"web_sources/prod_upserted"}
    meta = _latest_metadata(instance, AssetKey(["web_sources", "prod_upserted"]))
    assert meta["export_reexported"] is True and meta["export_path"] != export["export_path"]
    assert loaded.run_id in meta["export_path"] and Path(meta["export_path"]).is_file()
    assert meta["shipped"] == export["rows"] > 0  # nothing changed in between: the same delta
    with sync_env.prod() as prod:
        assert count(prod, "web_sources") == before + meta["inserted"] == meta["prod_rows_after"]


def test_a_failed_table_stops_only_the_tables_that_depend_on_it(sync_env, capsys):
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        prod.execute("CREATE FUNCTION no_sources() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "RAISE EXCEPTION 'sources are frozen' "
                     "USING ERRCODE = 'insufficient_privilege'; END $$")  # a table's failure, not a row's
        prod.execute("CREATE TRIGGER no_sources BEFORE INSERT ON web_sources "
                     "FOR EACH ROW EXECUTE FUNCTION no_sources()")
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "websync: error: web_sources: load into prod failed: sources are frozen" in err
    assert "websync: error: web_pages: not loaded: web_sources did not land in prod" in err
    assert "websync: error: web_files: not loaded: web_sources, web_pages did not land in prod" in err
    facts = sync_env.facts
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    with sync_env.prod() as prod:
        for table in ("web_sources", "web_pages", "web_files"):
            assert count(prod, table) == facts.prod_counts[table]
            assert instance.get_latest_materialization_event(AssetKey([table, "prod_upserted"])) is None
        assert count(prod, "knowledge_base") > facts.prod_counts["knowledge_base"]  # independent: it landed
    assert instance.get_latest_materialization_event(AssetKey(["web_pages", "export"])) is not None
    assert instance.get_latest_materialization_event(AssetKey(["prod", "reindex_requested"])) is None
