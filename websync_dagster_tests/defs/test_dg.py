"""`dg`, Dagster's project CLI, on this project as a user runs it (subprocesses, the venv activated,
DAGSTER_HOME prepared as `websync` prepares it): check, list, launch a job or one table's assets, serve
the UI; and none of the README's Dagster commands prints a deprecation or instance-config warning."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from websync_dagster.core.tables import DEFAULT_TABLES as TABLES
from websync_dagster.defs.instance import instance_yaml
from websync_dagster.demo.ports import free_port
from websync_dagster_tests.conftest import DEV_PASSWORD, PROD_PASSWORD, SyncEnv
from websync_dagster_tests.defs.test_webserver import graphql
from websync_dagster_tests.helpers import count

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DG = str(VENV_BIN / "dg")
DAGSTER = str(VENV_BIN / "dagster")

#: what none of the README's Dagster commands may print
UNWANTED = re.compile(
    r"SupersessionWarning|DeprecationWarning|PreviewWarning|BetaWarning|dagster\.yaml|"
    r"virtual environment does not match|Telemetry|Welcome to Dagster",
    re.IGNORECASE,
)

JOB_EXECUTE_SUPERSEDED = ("SupersessionWarning: Function `job_execute_command` is superseded and its usage is "
                          "discouraged. Use 'dg launch --job <job_name>' instead.")


@pytest.fixture
def dg_env(sync_env: SyncEnv) -> dict[str, str]:
    """The environment of a user who activated the venv, with DAGSTER_HOME as `websync` writes it."""
    (sync_env.dagster_home / "dagster.yaml").write_text(instance_yaml(sync_env.env))
    return {**os.environ, **sync_env.env, "VIRTUAL_ENV": str(VENV_BIN.parent),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(env: dict[str, str], *command: str, notice: str = "") -> str:
    """The command's stdout and stderr, after checking it succeeded and printed nothing unwanted (but
    the one expected ``notice``)."""
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert notice in output
    unwanted = sorted({m.group(0) for m in UNWANTED.finditer(output.replace(notice, ""))})
    assert not unwanted, f"{' '.join(command)} printed {unwanted}:\n{output[-3000:]}"
    assert DEV_PASSWORD not in output and PROD_PASSWORD not in output
    return output


def prod_counts(sync_env: SyncEnv) -> dict[str, int]:
    with sync_env.prod() as prod:
        return {table: count(prod, table) for table in TABLES}


def materialized(instance: DagsterInstance, table: str, name: str) -> dict:
    event = instance.get_latest_materialization_event(AssetKey([table, name]))
    return {} if event is None else {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_dg_check_and_list_defs_show_one_group_per_table(dg_env):
    assert "All definitions loaded successfully." in run(dg_env, DG, "check", "defs")
    listed = _json_part(run(dg_env, DG, "list", "defs", "--json"))
    groups = {a["asset_key"]: a["group_name"] for a in listed["assets"]}
    assert groups == {**{f"{t}/{k}": t for t in TABLES for k in ("export", "prod_upserted")},
                      "prod/reindex_requested": "prod"}
    assert {j["name"] for j in listed["jobs"]} >= {"websync_job", "export_job", "status_job", "diff_job"}


def _json_part(output: str) -> dict:
    return json.loads(output[output.index("{"):output.rindex("}") + 1])


def test_dg_launch_job_syncs_and_records_metadata(sync_env, dg_env):
    before = prod_counts(sync_env)
    run(dg_env, DG, "launch", "--job", "websync_job")
    after = prod_counts(sync_env)
    assert all(after[t] > before[t] for t in TABLES), (before, after)
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    for table in TABLES:
        meta = materialized(instance, table, "prod_upserted")
        assert (meta["prod_rows_before"], meta["prod_rows_after"]) == (before[table], after[table])
    [record] = instance.get_run_records()
    assert (record.dagster_run.job_name, record.dagster_run.status) == ("websync_job", DagsterRunStatus.SUCCESS)


# (`group:web_sources` selects the same, but Dagster 1.13's own selection parser then emits a BetaWarning)
@pytest.mark.parametrize("selection", ["web_sources/export,web_sources/prod_upserted", "key:web_sources/*"])
def test_dg_launch_assets_syncs_one_table(sync_env, dg_env, selection):
    before = prod_counts(sync_env)
    run(dg_env, DG, "launch", "--assets", selection)
    after = prod_counts(sync_env)
    others = [t for t in TABLES if t != "web_sources"]
    assert after["web_sources"] > before["web_sources"]
    assert {t: after[t] for t in others} == {t: before[t] for t in others}
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    assert materialized(instance, "web_sources", "prod_upserted")["prod_rows_after"] == after["web_sources"]
    assert all(not materialized(instance, t, k) for t in others for k in ("export", "prod_upserted"))


def test_dagster_job_execute_still_syncs_with_only_dagsters_own_notice(sync_env, dg_env):
    """Dagster 1.13 marks its own `dagster job execute` superseded by `dg launch --job` (its CLI warns, not
    this project's code): the command still syncs, and that notice is all it warns about."""
    before = prod_counts(sync_env)
    run(dg_env, DAGSTER, "job", "execute", "-m", "websync_dagster.definitions", "-j", "websync_job",
        notice=JOB_EXECUTE_SUPERSEDED)
    assert prod_counts(sync_env)["web_pages"] > before["web_pages"]


def test_dg_dev_serves_the_ui(sync_env, dg_env):
    port = free_port()
    log_path = sync_env.dagster_home / "dg_dev.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([DG, "dev", "-p", str(port)], cwd=REPO, env=dg_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_served(base, proc, log_path)
        data = graphql(base, "{ assetNodes { assetKey { path } groupName } }")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # the group dg started: webserver, daemon, code server
        proc.wait(60)
    groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in data["assetNodes"]}
    assert groups["web_files/prod_upserted"] == "web_files" and groups["prod/reindex_requested"] == "prod"
    output = log_path.read_text()
    unwanted = sorted({m.group(0) for m in UNWANTED.finditer(output)})
    assert not unwanted, f"dg dev printed {unwanted}:\n{output[-3000:]}"


def _wait_until_served(base: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=2):
                return
        except OSError:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.5)
    raise AssertionError(f"dg dev did not serve {base} within 120 s:\n{log_path.read_text()[-3000:]}")


@pytest.mark.servers  # subprocesses: two dg commands
def test_what_dg_scaffolds_in_the_defs_folder_is_loaded_with_websyncs_definitions(tmp_path):
    """`[tool.dg.project] defs_module` is the defs folder, and the code location loads it: an asset that
    `dg scaffold defs` puts there is listed by `dg list defs` next to websync's own, each once."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    subprocess.run(["cp", "-r", str(REPO / "websync_dagster"), str(project)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(VENV_BIN.parent), "PYTHONPATH": str(project),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    for name in [n for n in os.environ if n.startswith(("WEBSYNC_", "VPS_"))]:
        env.pop(name)

    def dg(*args: str) -> str:
        proc = subprocess.run([DG, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        return proc.stdout + proc.stderr

    dg("scaffold", "defs", "dagster.asset", "crawl_report.py")
    assert (project / "websync_dagster" / "defs" / "crawl_report.py").is_file()
    listed = _json_part(dg("list", "defs", "--json"))
    keys = [a["asset_key"] for a in listed["assets"]]
    assert "crawl_report" in keys
    assert sorted(keys) == sorted({*keys}) and "web_pages/prod_upserted" in keys
    assert [j["name"] for j in listed["jobs"]].count("status_job") == 1


def test_fresh_instance_opens_on_the_page_not_a_pop_up(tmp_path):
    """Dagster's UI covers its first page with a "Join the Dagster community" dialog on an instance whose
    dagster.yaml does not turn it off (scripts/screenshots.py shows it); websync's instance settings do,
    with SQLite storage and with Postgres storage."""
    (tmp_path / "dagster.yaml").write_text(instance_yaml({}))
    fix = "websync_dagster/defs/instance_config/{} needs `nux: {{enabled: false}}`: the UI opens under a pop-up"
    assert DagsterInstance.from_config(str(tmp_path)).nux_enabled is False, fix.format("dagster.yaml")
    postgres = yaml.safe_load(instance_yaml({"DAGSTER_PG_URL": "postgresql://u@127.0.0.1:1/d"}))
    assert postgres.get("nux") == {"enabled": False}, fix.format("dagster.postgres.yaml")
