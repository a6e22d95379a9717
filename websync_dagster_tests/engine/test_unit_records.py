"""Each commit unit's fate is in the run's manifest (engine/run_files.py): noted before it goes to prod, then
committed with its rows or rolled back; a unit whose end the run never wrote (killed, or the link lost, while prod
committed it) is said by undo, which leaves its rows alone, rather than passed over in silence (issue 18: the
manifest's kill window). Real servers; the run through the engine as the Dagster step runs it."""

from __future__ import annotations

import json

from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run_files import COMMITTED, ROLLED_BACK, SENDING, UNIT, manifest_path, read_manifest
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.undo.apply import undo_run
from websync_dagster_tests.engine.test_refusals import prod_ddl
from websync_dagster_tests.engine.test_update_faults import _sync
from websync_dagster_tests.helpers import count
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard


def _units(lines: list[dict]) -> dict[str, list[str]]:
    """unit id -> its states, in order."""
    states: dict[str, list[str]] = {}
    for line in lines:
        if line["op"] == UNIT:
            states.setdefault(line["unit"], []).append(line["state"])
    return states


def test_every_unit_of_a_run_is_noted_before_it_is_sent_and_ends_committed_or_rolled_back(sync_env):
    with prod_ddl(sync_env) as prod:  # web_pages fails with an error that is no row's: its unit rolls back
        prod.execute("CREATE FUNCTION fragile_check(u text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$ "
                     "BEGIN IF u LIKE '%page/150' THEN RAISE EXCEPTION 'crashed' USING ERRCODE = 'XX000'; END IF; "
                     "RETURN true; END $$")
        prod.execute("ALTER TABLE web_pages ADD CONSTRAINT fragile CHECK (fragile_check(url)) NOT VALID")
    run_id, runs = _sync(sync_env.settings())
    assert runs["web_pages"].error is not None and runs["knowledge_base"].error is None
    lines = read_manifest(sync_env.export_dir, run_id)
    states = _units(lines)
    tables = {line["unit"]: line["table"] for line in lines if line["op"] == UNIT}
    assert states and all(s[0] == SENDING and len(s) == 2 for s in states.values()), states
    assert {tables[u] for u, s in states.items() if s[1] == ROLLED_BACK} == {"web_pages"}
    assert {tables[u] for u, s in states.items() if s[1] == COMMITTED} >= {"web_sources", "knowledge_base"}
    # the committed mark follows its unit's rows: a row line never comes after its unit's end
    ended_at = {line["unit"]: n for n, line in enumerate(lines) if line["op"] == UNIT and line["state"] != SENDING}
    began_at = {line["unit"]: n for n, line in enumerate(lines) if line["op"] == UNIT and line["state"] == SENDING}
    inserted_kb = [n for n, line in enumerate(lines) if line["op"] == "inserted" and line["table"] == "knowledge_base"]
    kb_unit = next(u for u, t in tables.items() if t == "knowledge_base")
    assert inserted_kb and began_at[kb_unit] < min(inserted_kb) and max(inserted_kb) < ended_at[kb_unit]


def test_a_unit_whose_end_the_manifest_lacks_is_said_by_undo_and_its_rows_stay(sync_env):
    run_id, runs = _sync(sync_env.settings())
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
