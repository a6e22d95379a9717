"""A sync of a table opted in to newer-wins updates reports the rows both sides hold with the same version and other
content (issue 18 item 5: ``same_version_differs``) as the last diff of the table counted them, and when: a sync
reads only ids and versions, never prod's text. Real servers, the `websync` command as a user runs it (in process,
Dagster's instance of DAGSTER_HOME)."""

from __future__ import annotations

import json

from websync_dagster.cli import main as websync_main
from websync_dagster.engine.run import run_diff
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard, ids_of, recrawl


def _sync_json(capsys) -> dict[str, dict]:
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet", "--json"]) == 0, capsys.readouterr().err
    return {row["table"]: row for row in json.loads(capsys.readouterr().out)}


def test_a_sync_opted_in_reports_the_last_diffs_same_version_rows_and_when(sync_env, capsys, monkeypatch):
    monkeypatch.setenv("WEBSYNC_UPDATE_NEWER", "web_pages")
    first = _sync_json(capsys)  # no diff recorded yet: not known, and said as such
    assert first["web_pages"]["update_newer"] is True
    assert first["web_pages"]["same_version_differs"] is None
    assert first["web_pages"]["same_version_differs_as_of"] is None
    assert "same_version_differs" not in first["web_files"]  # not opted in

    with sync_env.dev() as dev:
        pages = ids_of(dev, "web_pages", 2)
        recrawl(dev, "web_pages", pages, "extracted_text", "re-crawled ")
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_pages", "UPDATE", pages)
    assert websync_main(["diff", "--env-file", "/dev/null", "--quiet"]) == 0
    capsys.readouterr()
    (diff,) = [d for d in run_diff(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_pages")) if d.table == "web_pages"]
    assert diff.same_version_differs and diff.newer_in_dev == 2  # the sample's drift: prod's own edits, same version

    second = _sync_json(capsys)
    pages_row = second["web_pages"]
    assert pages_row["updated"] == 2
    assert pages_row["same_version_differs"] == diff.same_version_differs  # the diff's: the update leaves them
    assert isinstance(pages_row["same_version_differs_as_of"], float)
