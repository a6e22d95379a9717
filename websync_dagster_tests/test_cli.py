"""The `websync` command as a user runs it (a subprocess): subcommands and their help, --version,
--tables, --json, --dry-run, the offline export, --env-file, and what is printed once."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from websync_dagster.cli.args import build_parser, normalised
from websync_dagster.cli.runner import prepare
from websync_dagster_tests.helpers import count, table_snapshot

REPO = Path(__file__).resolve().parent.parent
TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")

# Guard on prod for the dry run: any INSERT into a synced table fails loudly (the fixtures' guard already
# refuses UPDATE, DELETE, TRUNCATE and DDL outside temp schemas).
NO_INSERT = """
CREATE FUNCTION websync_no_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'dry run guard: INSERT on % is forbidden', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
"""


@pytest.fixture
def cli_env(sync_env, tmp_path) -> dict[str, str]:
    env = {**os.environ, **sync_env.env, "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("DAGSTER_PG_URL", None)
    return env


def websync(env: dict[str, str], *args: str, env_file: str | None = "/dev/null") -> subprocess.CompletedProcess:
    extra = ["--env-file", env_file] if env_file else []
    return subprocess.run([sys.executable, "-m", "websync_dagster.cli", *args, *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


def test_the_cli_hands_its_settings_to_the_job_without_writing_the_environment(tmp_path, monkeypatch):
    """--env-file and --tables reach the run through the settings the CLI loaded, never through os.environ."""
    env_file = tmp_path / "cli.env"
    env_file.write_text("WEBSYNC_DEV_URL=postgresql://d:file-secret-1@127.0.0.1:1/d\nWEBSYNC_WAIT_S=4\n")
    for name in [k for k in os.environ if k.startswith(("WEBSYNC_", "VPS_"))]:
        monkeypatch.delenv(name)
    before = dict(os.environ)
    settings, options = prepare("export", str(env_file), "web_pages")
    assert dict(os.environ) == before
    assert settings.tables == options.tables == ("web_pages",) and settings.wait_s == 4
    from websync_dagster.definitions import build_definitions

    definitions = build_definitions(options, settings)
    assert definitions.resources["websync"].settings() == settings


def test_commands_come_first_whatever_the_order_and_the_runbook_flags_still_work():
    parser = build_parser()
    assert normalised([], parser) == ["sync"]
    assert normalised(["--quiet"], parser) == ["sync", "--quiet"]
    assert normalised(["--env-file", "diff", "status"], parser) == ["status", "--env-file", "diff"]
    assert normalised(["--export", "--quiet"], parser) == ["export", "--quiet"]
    assert normalised(["--tables", "web_pages", "sync", "--json"], parser) == [
        "sync", "--tables", "web_pages", "--json"]
    with pytest.raises(SystemExit):
        normalised(["--export", "--diff"], parser)
    with pytest.raises(SystemExit):
        normalised(["status", "--diff"], parser)


@pytest.mark.servers  # three subprocesses
def test_each_command_has_its_own_help_and_the_version_is_shown():
    sync_help = subprocess.run([sys.executable, "-m", "websync_dagster.cli", "sync", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--dry-run" in sync_help and "--tables" in sync_help
    status_help = subprocess.run([sys.executable, "-m", "websync_dagster.cli", "status", "--help"],
                                 capture_output=True, text=True, check=True).stdout
    assert "--dry-run" not in status_help and "--tables" not in status_help and "--json" in status_help
    version = subprocess.run([sys.executable, "-m", "websync_dagster.cli", "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert version.strip() == f"websync {metadata.version('websync-dagster')}"  # the package's, as installed


def test_an_env_file_that_does_not_exist_is_refused(cli_env, tmp_path):
    proc = websync(cli_env, "status", env_file=str(tmp_path / "nope.env"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"websync: error: --env-file {tmp_path / 'nope.env'} does not exist"


def test_export_runs_with_no_prod_configured(cli_env, sync_env):
    env = {k: v for k, v in cli_env.items() if k != "WEBSYNC_PROD_URL"}
    proc = websync(env, "export", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = {r["table"]: r for r in json.loads(proc.stdout)}
    assert {t: rows[t]["rows"] for t in TABLES} == sync_env.facts.dev_counts
    assert all(Path(r["export_path"]).is_file() for r in rows.values())
    assert websync(env, "sync").returncode == 2  # a sync still needs prod, and says so


def test_json_is_one_object_per_table_with_the_metadata_fields_and_messages_stay_on_stderr(cli_env, sync_env):
    proc = websync(cli_env, "sync", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)  # stdout is only the JSON
    assert [r["table"] for r in rows] == list(TABLES)
    with sync_env.prod() as prod:
        for row in rows:
            assert row["prod_rows_after"] == count(prod, row["table"])
            assert {"inserted", "already_present", "skipped_by_key", "rejected", "mode", "transport"} <= set(row)
    assert "websync: web_pages:" in proc.stderr
    status = json.loads(websync(cli_env, "status", "--json").stdout)
    sources = {s["table"]: s.pop("sources") for s in status if "sources" in s}  # prod's web_sources rows
    assert list(sources) == ["web_sources"] and len(sources["web_sources"]) == rows[0]["prod_rows_after"]
    assert status == [{"table": r["table"], "prod rows": r["prod_rows_after"]} for r in rows]
    diff = json.loads(websync(cli_env, "diff", "--json").stdout)
    assert [d["table"] for d in diff] == list(TABLES) and all("missing_in_prod" in d for d in diff)


def test_a_failed_table_is_in_the_json_with_its_error(cli_env, sync_env):
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        prod.execute("ALTER TABLE web_files ADD COLUMN checksum_algo text NOT NULL DEFAULT 'md5'")
        prod.execute("ALTER TABLE web_files ALTER COLUMN checksum_algo DROP DEFAULT")
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")
    proc = websync(cli_env, "sync", "--json", "--quiet")
    assert proc.returncode == 1
    rows = {r["table"]: r for r in json.loads(proc.stdout)}
    assert "checksum_algo" in rows["web_files"]["error"] and rows["web_pages"]["inserted"] > 0


def test_status_prints_its_table_once_and_quiet_has_no_reminder(cli_env):
    status = websync(cli_env, "status")
    assert status.returncode == 0
    assert status.stdout.count("web_pages") == 1 and "web_pages" not in status.stderr.split("prod status:")[0]
    quiet = websync(cli_env, "sync", "--quiet")
    assert quiet.returncode == 0 and "reindex not configured" not in quiet.stderr
    loud = websync(cli_env, "sync")
    assert loud.stderr.count("reindex not configured") == 1


def test_tables_limits_the_run_and_names_a_left_out_dependency_prod_lacks(cli_env, sync_env):
    with sync_env.prod() as prod:
        before = {t: count(prod, t) for t in TABLES}
    proc = websync(cli_env, "sync", "--tables", "web_pages", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["table"] for r in json.loads(proc.stdout)] == ["web_pages"]
    assert "note: web_sources is not in --tables and prod lacks" in proc.stderr
    assert "note: knowledge_base is not in --tables and prod lacks" in proc.stderr
    with sync_env.prod() as prod:
        after = {t: count(prod, t) for t in TABLES}
    assert after["web_pages"] > before["web_pages"]
    assert {t: after[t] for t in TABLES if t != "web_pages"} == {t: before[t] for t in TABLES if t != "web_pages"}
    assert websync(cli_env, "sync", "--tables", "knowledge_base_chunks").returncode == 2


def test_dry_run_says_what_a_sync_would_do_and_writes_nothing_to_prod(cli_env, sync_env):
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        prod.execute(NO_INSERT)
        for table in TABLES:
            prod.execute(f"CREATE TRIGGER websync_no_insert BEFORE INSERT ON {table} "
                         f"FOR EACH ROW EXECUTE FUNCTION websync_no_insert()")
        prod.execute("ALTER TABLE web_files ADD COLUMN checksum_algo text NOT NULL DEFAULT 'md5'")
        prod.execute("ALTER TABLE web_files ALTER COLUMN checksum_algo DROP DEFAULT")
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")
        before = {t: table_snapshot(prod, t) for t in TABLES}
    proc = websync(cli_env, "sync", "--dry-run", "--json")
    assert proc.returncode == 1, proc.stderr  # a table would fail: said, with exit 1
    rows = {r["table"]: r for r in json.loads(proc.stdout)}
    with sync_env.prod() as prod:
        assert {t: table_snapshot(prod, t) for t in TABLES} == before
    assert "checksum_algo" in rows["web_files"]["would_fail"]
    pages = rows["web_pages"]
    assert pages["would_insert"] > 0 and pages["already_present"] >= 1 and pages["bytes"] > 0
    assert 0 < pages["bytes_compressed"] < pages["bytes"]
    assert sum(rows["web_sources"]["skipped_by_key"].values()) >= 1  # the page prod has under another id
    export_dir = Path(cli_env["WEBSYNC_EXPORT_DIR"])
    assert not export_dir.exists() or not list(export_dir.rglob("*.csv"))  # the delta went to a temp dir
    assert not (Path(cli_env["DAGSTER_HOME"]) / "history").exists()  # no Dagster run


def test_dry_run_figures_are_what_the_sync_then_does(cli_env):
    dry = {r["table"]: r for r in json.loads(websync(cli_env, "sync", "--dry-run", "--json").stdout)}
    real = {r["table"]: r for r in json.loads(websync(cli_env, "sync", "--json").stdout)}
    for table in TABLES:
        assert dry[table]["would_insert"] == real[table]["shipped"], table
        assert dry[table]["already_present"] <= real[table]["already_present"], table


def _in_a_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run websync with a pseudo-terminal as its stdout and stderr, as a user's shell does."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "websync_dagster.cli", *args, "--env-file", "/dev/null"],
                            cwd=REPO, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    with contextlib.suppress(OSError):  # EIO once the process has exited and the terminal is closed
        while data := os.read(leader, 1 << 16):
            out += data
    os.close(leader)
    return proc.wait(timeout=120), out.decode("utf-8", "replace")


def test_a_terminal_gets_progress_bars_and_a_pipe_plain_lines(cli_env):
    env = {**cli_env, "WEBSYNC_PROGRESS_EVERY_S": "0", "COLUMNS": "120", "TERM": "xterm-256color"}
    plain = websync(env, "export")
    assert plain.returncode == 0 and "websync: web_pages export: " in plain.stderr and "━" not in plain.stderr
    status, shown = _in_a_terminal(env, "export")
    assert status == 0
    assert "━" in shown and "web_pages export" in shown  # rich's bars, one per table
    assert "websync: web_pages export: " not in shown  # not the plain lines
