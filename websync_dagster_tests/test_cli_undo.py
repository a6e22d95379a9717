"""`websync sync --update-newer` and `websync undo RUN_ID` as a user runs them (subprocesses, real servers, the
Dagster instance of DAGSTER_HOME): the table gains the updated rows, the dry run of the undo says what it would
do and writes nothing, the undo takes the run back and is itself a run of undo_job."""

from __future__ import annotations

import json
import os

import pytest
from dagster import DagsterInstance

from websync_dagster_tests.helpers import sync_all
from websync_dagster_tests.test_cli import websync
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard, checksum, ids_of, recrawl

pytestmark = pytest.mark.servers


def test_sync_update_newer_then_undo_dry_run_then_undo(sync_env, tmp_path):
    env = {**os.environ, **sync_env.env, "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("DAGSTER_PG_URL", None)
    sync_all(sync_env.settings())
    with sync_env.dev() as dev:
        files = ids_of(dev, "web_files", 2)
        recrawl(dev, "web_files", files, "text_content", "re-read ")
        dev.execute("UPDATE web_files SET updated_at = now() WHERE id = ANY(%s::uuid[])", [files])
    with sync_env.prod() as prod:
        before = checksum(prod, "web_files")
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_files", "UPDATE", files)

    synced = websync(env, "sync", "--update-newer", "web_files:updated_at", "--json")
    assert synced.returncode == 0, synced.stderr
    rows = {r["table"]: r for r in json.loads(synced.stdout)}
    assert rows["web_files"]["updated"] == 2 and rows["web_files"]["before_image_file"].endswith(".jsonl")
    assert {r["column"]: r["rows"] for r in rows["web_files"]["update_changes"]}["text_content"] == 2
    assert rows["web_pages"]["updated"] == 0 and rows["web_pages"]["update_newer"] is False
    run_id = rows["web_files"]["manifest_file"].rsplit("/", 1)[1].removesuffix(".jsonl")
    with sync_env.prod() as prod:
        after_sync = checksum(prod, "web_files")
    assert after_sync != before

    dry = websync(env, "undo", run_id, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert {r["table"]: r["would restore"] for r in json.loads(dry.stdout)} == {"web_files": 2}
    with sync_env.prod() as prod:
        assert checksum(prod, "web_files") == after_sync

    undone = websync(env, "undo", run_id)
    assert undone.returncode == 0, undone.stderr
    assert "web_files" in undone.stdout and "succeeded" in undone.stderr
    with sync_env.prod() as prod:
        assert checksum(prod, "web_files") == before
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert [r.job_name for r in instance.get_runs()][:2] == ["undo_job", "websync_job"]

    missing = websync(env, "undo", "no-such-run")
    assert missing.returncode == 1 and "no manifest for run no-such-run" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_update_newer_on_the_command_line_replaces_the_variable(tmp_path, monkeypatch):
    from websync_dagster.cli.args import parse_args
    from websync_dagster.cli.runner import prepare

    env_file = tmp_path / "cli.env"
    env_file.write_text("WEBSYNC_DEV_URL=postgresql://d@127.0.0.1:1/d\nWEBSYNC_PROD_URL=postgresql://p@127.0.0.1:1/p\n"
                        "WEBSYNC_UPDATE_NEWER=knowledge_base\n")
    for name in [k for k in os.environ if k.startswith(("WEBSYNC_", "VPS_"))]:
        monkeypatch.delenv(name)
    args = parse_args(["--update-newer", "web_pages", "sync", "--update-newer", "web_files:last_seen"])
    settings, _ = prepare("sync", str(env_file), None, args.update_newer)
    assert settings.version_columns == {"web_pages": "updated_at", "web_files": "last_seen"}
    assert prepare("sync", str(env_file), None, None)[0].version_columns == {"knowledge_base": "updated_at"}
    assert parse_args(["undo", "20261202_000000_0123456789ab", "--dry-run"]).run_id == "20261202_000000_0123456789ab"
