"""A run `websync` records is seen where an operator looks: under its job in the UI (Jobs > websync_job > Runs,
the Jobs list's run bars), as a run launched from the UI or the schedule is, through the tags Dagster files
a code location's runs under (``code_location_tags``): a Dagster upgrade that changes them fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dagster import DagsterInstance, RunsFilter, job, op
from dagster._core.storage.tags import CODE_LOCATION_TAG as DAGSTER_CODE_LOCATION_TAG
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG as DAGSTER_REPOSITORY_LABEL_TAG
from dagster._core.workspace.load import location_origins_from_yaml_paths

from websync_dagster.definitions import defs
from websync_dagster.defs.code_location import (
    CODE_LOCATION,
    CODE_LOCATION_TAG,
    REPOSITORY_LABEL_TAG,
    code_location_tags,
)
from websync_dagster.defs.run_processes import HOST_TAG, PID_TAG
from websync_dagster_tests.defs.test_webserver import (
    REPO,
    graphql,
    webserver,  # noqa: F401 - the fixture
)

REPOSITORY = "__repository__"  # the repository a Definitions object is loaded as
LABEL = f"{REPOSITORY}@{CODE_LOCATION}"


@op
def noop() -> None:
    pass


@job
def tiny_job() -> None:
    noop()


# --- the fast layer: Dagster's own names, on a real SQLite instance ------------------------------------------------

def test_the_tags_are_the_ones_dagster_files_a_code_locations_runs_under():
    """Tests may read Dagster's private constants: the product spells them, and this fails if they move."""
    assert (REPOSITORY_LABEL_TAG, CODE_LOCATION_TAG) == (DAGSTER_REPOSITORY_LABEL_TAG, DAGSTER_CODE_LOCATION_TAG)
    [origin] = location_origins_from_yaml_paths([str(REPO / "workspace.yaml")])
    assert origin.location_name == CODE_LOCATION
    assert defs().get_repository_def().name == REPOSITORY


def test_a_run_with_the_tags_is_found_as_the_ui_asks_for_a_jobs_runs(tmp_path):
    instance = DagsterInstance.from_config(str(tmp_path))
    result = tiny_job.execute_in_process(instance=instance, tags={"websync/cli": "test",
                                                                  **code_location_tags(REPOSITORY)})
    tiny_job.execute_in_process(instance=instance)  # another run, not filed under the location
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[CODE_LOCATION_TAG] == CODE_LOCATION and run.tags["websync/cli"] == "test"
    found = instance.get_run_records(RunsFilter(job_name="tiny_job", tags={REPOSITORY_LABEL_TAG: LABEL}))
    assert [r.dagster_run.run_id for r in found] == [result.run_id]


# --- through the real webserver, after `websync` commands ----------------------------------------------------------

def _websync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "websync_dagster.cli", *args, "--env-file", "/dev/null"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


RUN_FIELDS = """runId status pipelineName tags { key value } repositoryOrigin { repositoryName }"""


def _job_runs(base: str, job_name: str, repository: str, location: str) -> list[dict]:
    """The runs the UI's Jobs > job > Runs page shows: filtered by the job's name and its repository's label."""
    label = json.dumps(f"{repository}@{location}")
    data = graphql(base, f"""{{ runsOrError(filter: {{pipelineName: "{job_name}",
        tags: [{{key: "{REPOSITORY_LABEL_TAG}", value: {label}}}]}}) {{
        ... on Runs {{ results {{ {RUN_FIELDS} }} }} }} }}""")
    return data["runsOrError"]["results"]


def _runs_of_job_in_list(base: str, job_name: str, repository: str, location: str) -> list[str]:
    """The runs behind the Jobs list's run bars (the job's ``runs``, which Dagster filters by the repository)."""
    data = graphql(base, f"""{{ pipelineOrError(params: {{pipelineName: "{job_name}", repositoryName: "{repository}",
        repositoryLocationName: "{location}"}}) {{ ... on Pipeline {{ runs {{ runId }} }} }} }}""")
    return [r["runId"] for r in data["pipelineOrError"]["runs"]]


def test_runs_of_websync_commands_are_under_their_job_in_the_ui(sync_env, webserver):  # noqa: F811
    env = {**os.environ, **sync_env.env}
    env.pop("DAGSTER_PG_URL", None)
    for command in ("sync", "status"):
        done = _websync(env, command, "--quiet")
        assert done.returncode == 0, done.stderr[-3000:]
    data = graphql(webserver, """{ repositoriesOrError { ... on RepositoryConnection {
        nodes { name location { name } } } } }""")
    [repository] = data["repositoriesOrError"]["nodes"]
    name, location = repository["name"], repository["location"]["name"]
    assert (name, location) == (REPOSITORY, CODE_LOCATION)
    everything = graphql(webserver, f"{{ runsOrError {{ ... on Runs {{ results {{ {RUN_FIELDS} }} }} }} }}")
    runs = {r["pipelineName"]: r for r in everything["runsOrError"]["results"]}
    assert set(runs) == {"websync_job", "status_job"}
    for job_name, run in runs.items():
        assert run["status"] == "SUCCESS"
        assert run["repositoryOrigin"] is None  # no public API records it: the Overview timeline misses the run
        assert [r["runId"] for r in _job_runs(webserver, job_name, name, location)] == [run["runId"]], job_name
        assert _runs_of_job_in_list(webserver, job_name, name, location) == [run["runId"]], job_name
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["websync/cli"] == {"websync_job": "sync", "status_job": "status"}[job_name]
        assert {HOST_TAG, PID_TAG} <= set(tags)
