"""websync_job on a Postgres-backed Dagster instance (dagster-postgres on an embedded server)."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance

from websync_dagster.cli import main as websync_main
from websync_dagster_tests.helpers import count


def test_websync_job_on_a_postgres_instance(sync_env, servers, tmp_path, monkeypatch):
    storage_url = servers.prod.create_database(f"dagster_{tmp_path.name[-20:].replace('-', '_')}")
    home = tmp_path / "pg_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", storage_url)
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0
    assert "dagster_pg_url" in (home / "dagster.yaml").read_text().lower()
    instance = DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    event = instance.get_latest_materialization_event(AssetKey(["web_pages", "prod_upserted"]))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    with sync_env.prod() as prod:
        assert metadata["prod_rows_after"] == count(prod, "web_pages")
    assert metadata["prod_rows_before"] == sync_env.facts.prod_counts["web_pages"]
    import psycopg

    with psycopg.connect(storage_url) as conn:  # the runs really are in that database
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_the_shipped_sqlite_instance_is_dagsters_own_storage(sync_env, tmp_path, monkeypatch):
    """The project's dagster.yaml: Dagster's stock SQLite storage (no private subclass), its files and WAL mode."""
    import sqlite3

    home = tmp_path / "fresh_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0
    instance = DagsterInstance.from_config(str(home))
    storage = instance.event_log_storage
    assert type(storage).__name__ == "SqliteEventLogStorage"
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.is_success for r in runs)
    first = instance.all_logs(runs[-1].run_id)
    assert sum(1 for e in first if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION") == 9
    event = instance.get_latest_materialization_event(AssetKey(["web_pages", "prod_upserted"]))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    with sync_env.prod() as prod:
        assert metadata["prod_rows_after"] == count(prod, "web_pages") and metadata["inserted"] == 0
    shard = home / "history" / "runs" / f"{runs[0].run_id}.db"
    assert shard.exists() and (home / "history" / "runs" / "index.db").exists()
    with sqlite3.connect(shard) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
