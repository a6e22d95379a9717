"""Each commit unit's fate is in the run's manifest (engine/run_files.py): its rows written, with a ``committing``
line, after prod ran the unit and before its COMMIT is sent, then ``committed``, or ``rolled back`` (issue 18: the
manifest's kill window, closed; the kill itself: test_kill_at_commit.py). A unit whose rows cannot be written is
rolled back. A psql per transaction, which cannot hold a unit open, notes the unit ``sending`` first, and undo says
a unit whose end is missing rather than passing over it. Real servers; the run through the engine as the Dagster
step runs it."""

from __future__ import annotations

import json

import pytest

from websync_dagster.engine import run_files
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run_files import (
    COMMITTED,
    COMMITTING,
    ROLLED_BACK,
    SENDING,
    UNIT,
    manifest_path,
    read_manifest,
)
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.undo.apply import undo_run
from websync_dagster_tests.conftest import CONTAINER
from websync_dagster_tests.engine.test_refusals import prod_ddl
from websync_dagster_tests.engine.test_update_faults import _sync
from websync_dagster_tests.helpers import count, table_snapshot
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard

FRAGILE = ("CREATE FUNCTION fragile_check(u text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$ "
           "BEGIN IF u LIKE '%page/150' THEN RAISE EXCEPTION 'crashed' USING ERRCODE = 'XX000'; END IF; "
           "RETURN true; END $$",
           "ALTER TABLE web_pages ADD CONSTRAINT fragile CHECK (fragile_check(url)) NOT VALID")


def _units(lines: list[dict]) -> dict[str, list[str]]:
    """unit id -> its states, in order."""
    states: dict[str, list[str]] = {}
    for line in lines:
        if line["op"] == UNIT:
            states.setdefault(line["unit"], []).append(line["state"])
    return states


def test_each_units_rows_are_on_disk_before_its_commit_and_it_ends_committed_or_rolled_back(sync_env, prod_via):
    with prod_ddl(sync_env) as prod:  # web_pages fails with an error that is no row's: its unit rolls back
        for statement in FRAGILE:
            prod.execute(statement)
    run_id, runs = _sync(prod_via(sync_env))
    assert runs["web_pages"].error is not None and runs["knowledge_base"].error is None
    lines = read_manifest(sync_env.export_dir, run_id)
    states = _units(lines)
    tables = {line["unit"]: line["table"] for line in lines if line["op"] == UNIT}
    assert states and all(s in ([COMMITTING, COMMITTED], [ROLLED_BACK]) for s in states.values()), states
    assert {tables[u] for u, s in states.items() if s == [ROLLED_BACK]} == {"web_pages"}
    assert {tables[u] for u, s in states.items() if s[-1] == COMMITTED} >= {"web_sources", "knowledge_base"}
    # a unit's rows come in the write that says it is committing: never after it, never for a unit rolled back
    marked_at = {line["unit"]: n for n, line in enumerate(lines) if line["op"] == UNIT and line["state"] == COMMITTING}
    rows = [(n, line) for n, line in enumerate(lines) if line["op"] == "inserted"]
    assert rows and all(line["unit"] in marked_at and n < marked_at[line["unit"]] for n, line in rows)
    assert not [line for _, line in rows if line["table"] == "web_pages"]


def test_a_unit_whose_rows_cannot_be_written_is_rolled_back_and_the_next_run_lands_it(sync_env, prod_via,
                                                                                        monkeypatch):
    with sync_env.prod() as prod:
        pages = table_snapshot(prod, "web_pages")
    real_append = run_files._append

    def append(path, lines):
        lines = list(lines)
        if any(line.get("state") == COMMITTING and line["table"] == "web_pages" for line in lines):
            raise OSError(28, "No space left on device")
        return real_append(path, lines)

    monkeypatch.setattr(run_files, "_append", append)
    _, runs = _sync(prod_via(sync_env))
    error = str(runs["web_pages"].error)
    assert error.startswith("web_pages: the run's manifest ") and "([Errno 28] No space left on device)" in error, error
    assert error.endswith("the unit was rolled back before its commit, nothing of it is in prod; the unit held rows "
                          f"1-{runs['web_pages'].export.rows} of the delta (0 rows committed before stay)"), error
    assert runs["web_sources"].error is None and runs["knowledge_base"].error is None
    with sync_env.prod() as prod:
        assert table_snapshot(prod, "web_pages") == pages
    monkeypatch.setattr(run_files, "_append", real_append)
    _, runs = _sync(prod_via(sync_env))
    assert all(r.error is None for r in runs.values()), {t: r.error for t, r in runs.items()}
    with sync_env.prod() as prod:
        assert count(prod, "web_pages") > len(pages)


@pytest.fixture
def per_transaction(sync_env, vps):
    """Settings of ssh_psql with a psql per transaction (which cannot hold a unit open before its COMMIT)."""
    database = sync_env.prod_url.rsplit("/", 1)[1]
    return sync_env.settings(**vps.env(WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL_PER_TRANSACTION="1",
                                       WEBSYNC_PROD_PSQL=f"docker exec -i {CONTAINER} psql -U postgres -d {database}"))


def test_a_psql_per_transaction_notes_each_unit_before_it_is_sent(sync_env, per_transaction):
    with prod_ddl(sync_env) as prod:
        for statement in FRAGILE:
            prod.execute(statement)
    run_id, runs = _sync(per_transaction)
    assert runs["web_pages"].error is not None and runs["knowledge_base"].error is None
    states = _units(read_manifest(sync_env.export_dir, run_id))
    assert states and all(s in ([SENDING, COMMITTED], [SENDING, ROLLED_BACK]) for s in states.values()), states


def test_a_unit_whose_end_the_manifest_lacks_is_said_by_undo_and_its_rows_stay(sync_env, per_transaction):
    run_id, runs = _sync(per_transaction)
    assert all(r.error is None for r in runs.values())
    path = manifest_path(sync_env.export_dir, run_id)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    # what a process killed between prod's COMMIT of the web_pages unit and the manifest's write leaves on disk:
    # the unit noted as being sent, neither its rows nor its end
    kept = [line for line in lines if not (line["table"] == "web_pages" and (
        line["op"] == "inserted" or (line["op"] == UNIT and line["state"] != SENDING)))]
    path.write_text("".join(json.dumps(line) + "\n" for line in kept))
    inserted = {t: [line["id"] for line in lines if line["op"] == "inserted" and line["table"] == t]
                for t in ("web_sources", "knowledge_base", "web_pages", "web_files")}
    assert inserted["web_pages"] and inserted["web_files"]
    arm_allowing_guard(sync_env.prod_url)
    for table in ("web_files", "knowledge_base", "web_sources"):
        allow(sync_env.prod_url, table, "DELETE", inserted[table])
    with sync_env.prod() as prod:
        pages_after_sync = count(prod, "web_pages")
    notes: list[str] = []
    with SyncContext(sync_env.settings()) as ctx:
        results = {r.table: r for r in undo_run(ctx, run_id, undo_run_id=new_run_id(),
                                                report=lambda e: notes.append(e.text()))}
    pages = results["web_pages"]
    assert (pages.deleted, len(pages.unrecorded_units)) == (0, 1)
    assert "may have committed without its rows in the manifest" in pages.unrecorded_units[0]
    assert "row 1 of the run's export of web_pages" in pages.unrecorded_units[0]
    assert pages.to_dict()["unrecorded units"] == pages.unrecorded_units
    assert any("web_pages" in n and "not undone: a unit that inserted rows" in n for n in notes), notes
    assert results["web_files"].deleted == len(inserted["web_files"])  # the rest of the run is taken back
    with sync_env.prod() as prod:
        assert count(prod, "web_pages") == pages_after_sync  # left as they are, and said
