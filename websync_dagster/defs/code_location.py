"""Where the UI looks for a run: ``code_location_tags`` files the runs websync creates under their job in the code
location workspace.yaml names."""

from __future__ import annotations

#: the code location as workspace.yaml loads it (``module_name`` and ``location_name``)
CODE_LOCATION_MODULE, CODE_LOCATION = "websync_dagster.definitions", "websync_dagster"

#: the tags Dagster gives a run of a code location (``DagsterRun.tags_for_storage``): the repository label the
#: UI filters a job's runs on, and the location's name
REPOSITORY_LABEL_TAG, CODE_LOCATION_TAG = ".dagster/repository", "dagster/code_location"


def code_location_tags(repository_name: str) -> dict[str, str]:
    """Tags that file a run websync creates under its job in the code location workspace.yaml names
    (CODE_LOCATION, its repository ``repository_name``: ``Definitions.get_repository_def().name``), as a run
    launched from the UI or the schedule is: the UI's Jobs > job > Runs page and the Jobs list's run bars ask
    for a job's runs by its name and the repository label tag ``<repository>@<location>``.

    Why tags and not the run's origin: no public Dagster API creates a run with one (``execute_in_process``,
    ``execute_job`` and ``dagster job execute`` record none: dagster-io/dagster#17707), and websync uses no
    private API of Dagster. So such a run's ``repositoryOrigin`` stays null, and the Overview timeline, which
    groups runs by it, does not show it (docs/RELIABILITY.md, known limits). The tag names are Dagster's
    storage convention: websync_dagster_tests/defs/test_runs_in_ui.py fails, through the real webserver, if
    an upgrade changes them."""
    return {REPOSITORY_LABEL_TAG: f"{repository_name}@{CODE_LOCATION}", CODE_LOCATION_TAG: CODE_LOCATION}
