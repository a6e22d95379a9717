"""The `websync` process itself (what a no-op sync costs is mostly start-up and exit): what it imports, the
garbage collector it leaves, and that a run ended by the process's quick exit is recorded whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from websync_dagster.core.tables import DEFAULT_TABLES
from websync_dagster_tests.helpers import count

REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.servers  # a Python subprocess
def test_importing_the_cli_leaves_the_garbage_collector_on_and_rich_unloaded():
    """The collector is paused for the CLI's imports only; rich is loaded when a bar is drawn, not before."""
    out = _python("import gc, sys, websync_dagster.cli; print(gc.isenabled(), 'rich' in sys.modules)")
    assert out == "True False"


@pytest.mark.servers  # a Python subprocess
def test_a_caller_that_paused_the_collector_keeps_it_paused():
    assert _python("import gc; gc.disable(); import websync_dagster.cli; print(gc.isenabled())") == "False"


@pytest.mark.servers  # a Python subprocess
def test_importing_the_cli_loads_no_dagster():
    """Dagster and the code location are imported when a run needs them: `websync --version` needs none."""
    assert _python("import sys, websync_dagster.cli; print(sorted({'dagster', 'websync_dagster.definitions', "
                   "'websync_dagster.cli.runner'} & set(sys.modules)))") == "[]"


@pytest.mark.servers  # a Python subprocess
def test_importing_any_cli_module_freezes_nothing():
    """No work at import time: the heap is frozen by a run of the process's own, never by an import."""
    modules = sorted(p.stem for p in (REPO / "websync_dagster" / "cli").glob("*.py") if p.stem != "__main__")
    assert "runner" in modules
    imports = "; ".join(f"import websync_dagster.cli.{m}" for m in modules if m != "__init__")
    assert _python(f"import gc; {imports}; print(gc.get_freeze_count(), gc.isenabled())") == "0 True"


def _websync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "websync_dagster.cli", *args, "--env-file", "/dev/null"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.servers
def test_a_no_op_process_records_its_run_whole_and_prints_its_table(sync_env, tmp_path):
    """The process freezes its heap and skips the interpreter's collections at exit: the run, its
    materializations with their metadata and its checks are all in DAGSTER_HOME once it has ended."""
    home = tmp_path / "home"
    env = {**os.environ, **sync_env.env, "DAGSTER_HOME": str(home)}
    env.pop("DAGSTER_PG_URL", None)
    assert _websync(env, "sync", "--quiet").returncode == 0
    noop = _websync(env, "sync", "--quiet")
    assert noop.returncode == 0 and noop.stderr == ""
    header, *rows = noop.stdout.splitlines()
    assert header.split()[:3] == ["table", "prod", "before"] and [r.split()[0] for r in rows] == list(DEFAULT_TABLES)
    assert all(r.split()[3] == "0" for r in rows), noop.stdout  # inserted: nothing new

    instance = DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.is_success for r in runs)
    assert runs[0].tags["websync/cli"] == "sync" and runs[0].tags["websync/pid"].isdigit()
    logs = instance.all_logs(runs[0].run_id)
    kinds = [e.dagster_event.event_type_value for e in logs if e.dagster_event]
    assert kinds.count("ASSET_MATERIALIZATION") == 9 and kinds.count("ASSET_CHECK_EVALUATION") == 12
    assert kinds[-1] == "PIPELINE_SUCCESS"
    with sync_env.prod() as prod:
        for table in DEFAULT_TABLES:
            event = instance.get_latest_materialization_event(AssetKey([table, "prod_upserted"]))
            assert event.run_id == runs[0].run_id
            metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
            assert metadata["inserted"] == 0 and metadata["prod_rows_after"] == count(prod, table)
