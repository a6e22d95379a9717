"""The real dagster-webserver on a free port, read through its GraphQL API after a finished run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from websync_dagster.cli import main as websync_main
from websync_dagster.demo.ports import free_port

REPO = Path(__file__).resolve().parents[2]
WEBSERVER = str(Path(sys.executable).parent / "dagster-webserver")
TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")


def graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body.get("errors")
    return body["data"]


@pytest.fixture
def webserver(sync_env):
    port = free_port()
    log = open(sync_env.dagster_home / "webserver.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([WEBSERVER, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO,
                            env={**os.environ, **sync_env.env}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=2):
                break
        except OSError:
            assert proc.poll() is None, (sync_env.dagster_home / "webserver.log").read_text()[-3000:]
            time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(30)
    log.close()


def test_graphql_shows_assets_lineage_jobs_sensor_schedule_and_metadata(sync_env, webserver):
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0
    data = graphql(webserver, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    nodes = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]}
             for n in data["assetNodes"]}
    expected = {f"{t}/{k}" for t in TABLES for k in ("export", "prod_upserted")} | {"prod/reindex_requested"}
    assert set(nodes) == expected
    assert nodes["web_pages/prod_upserted"] == {
        "web_pages/export", "web_sources/prod_upserted", "knowledge_base/prod_upserted"}
    assert nodes["web_files/prod_upserted"] == {
        "web_files/export", "web_sources/prod_upserted", "knowledge_base/prod_upserted", "web_pages/prod_upserted"}
    assert nodes["prod/reindex_requested"] == {"knowledge_base/prod_upserted", "web_pages/prod_upserted"}

    data = graphql(webserver, """{ repositoriesOrError { ... on RepositoryConnection { nodes {
        jobs { name } sensors { name sensorState { status } } schedules { name cronSchedule scheduleState { status } }
    } } } }""")
    repo = data["repositoriesOrError"]["nodes"][0]
    assert {j["name"] for j in repo["jobs"]} >= {"websync_job", "export_job", "status_job", "diff_job"}
    assert [(s["name"], s["sensorState"]["status"]) for s in repo["sensors"]] == [("dev_prod_diff_sensor", "STOPPED")]
    assert [(s["name"], s["scheduleState"]["status"]) for s in repo["schedules"]] == [("websync_nightly", "STOPPED")]

    data = graphql(webserver, """{ assetOrError(assetKey: {path: ["web_pages", "prod_upserted"]}) {
        ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries {
            label ... on IntMetadataEntry { intValue } } } } } }""")
    materialization = data["assetOrError"]["assetMaterializations"][0]
    values = {e["label"]: e.get("intValue") for e in materialization["metadataEntries"]}
    with sync_env.prod() as prod:
        after = prod.execute("SELECT count(*) FROM web_pages").fetchone()[0]
    assert values["prod_rows_before"] == sync_env.facts.prod_counts["web_pages"]
    assert values["prod_rows_after"] == after
    run_id = materialization["runId"]
    run = graphql(webserver, f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status jobName }} }} }}')
    assert run["runOrError"] == {"status": "SUCCESS", "jobName": "websync_job"}
