"""The update path when things go wrong (issue 18, docs/RELIABILITY.md): a cut mid-update resumes in the same run
with every committed update's before-image on disk; before-images that cannot be written stop the table before
anything of it changes; a row prod refuses as an update is rejected with prod's reason and one that would clash on
another unique key is skipped under it, the old rows staying; a swallowed update fails the blocking check; undo
leaves alone a row prod changed since the run, and a row a prod row references."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run import run_tables
from websync_dagster.engine.run_files import read_before_images, read_manifest
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.undo.apply import undo_run
from websync_dagster.engine.update import units
from websync_dagster_tests.helpers import rows_by_id, sync_all, table_snapshot
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard, ids_of, prod_ddl, recrawl

TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")
#: ends its own session at the third row it sees updated (a sequence: not rolled back with the unit)
CUT_AT_THIRD_UPDATE = """
CREATE SEQUENCE websync_cut_seq;
CREATE FUNCTION websync_cut() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('websync_cut_seq') = 3 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER websync_cut BEFORE UPDATE ON web_files FOR EACH ROW EXECUTE FUNCTION websync_cut();
"""


def _sync(settings):
    run_id = new_run_id()
    with SyncContext(settings) as ctx:
        return run_id, {r.table: r for r in run_tables(ctx, export=TABLES, load=TABLES, declared_deps=DECLARED_DEPS,
                                                       run_id=run_id)}


def _newer_files(sync_env, n: int) -> list[str]:
    with sync_env.dev() as dev:
        files = ids_of(dev, "web_files", n)
        recrawl(dev, "web_files", files, "text_content", "re-read ")
        dev.execute("UPDATE web_files SET updated_at = now() WHERE id = ANY(%s::uuid[])", [files])
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_files", "UPDATE", files)
    return files


def test_a_cut_mid_update_resumes_in_the_same_run_and_every_committed_update_has_its_before_image(
        sync_env, monkeypatch):
    sync_all(sync_env.settings())
    files = _newer_files(sync_env, 5)
    prod_ddl(sync_env.prod_url, CUT_AT_THIRD_UPDATE)
    monkeypatch.setattr(units, "UNIT_ROWS", 2)
    monkeypatch.setattr("websync_dagster.engine.update.run.RECONNECT_PAUSE_S", 0.1)
    run_id, runs = _sync(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_files"))
    assert runs["web_files"].error is None, runs["web_files"].error
    assert runs["web_files"].update.updated == 5
    with sync_env.dev() as dev, sync_env.prod() as prod:
        assert prod.execute("SELECT last_value FROM websync_cut_seq").fetchone()[0] >= 3  # the cut happened
        assert rows_by_id(prod, "web_files", files, ["text_content"]) == rows_by_id(dev, "web_files", files,
                                                                                     ["text_content"])
    updated = [m["id"] for m in read_manifest(sync_env.export_dir, run_id) if m["op"] == "updated"]
    assert sorted(updated) == sorted(files)  # each once: the unit cut was rolled back, then sent again
    images = {i for i, _ in read_before_images(sync_env.export_dir, "web_files", run_id)}
    assert images >= set(files)


def test_before_images_that_cannot_be_written_stop_the_table_before_it_changes(sync_env):
    sync_all(sync_env.settings())
    _newer_files(sync_env, 3)
    sync_env.export_dir.mkdir(parents=True, exist_ok=True)
    (sync_env.export_dir / "before").write_text("a file where the before-images' folder should be")
    with sync_env.prod() as prod:
        before = table_snapshot(prod, "web_files")
    _, runs = _sync(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_files"))
    error = str(runs["web_files"].error)
    assert error.startswith("web_files: the before-images could not be written to ") and \
        error.endswith("nothing of this unit was changed in prod"), error
    with sync_env.prod() as prod:
        assert table_snapshot(prod, "web_files") == before
    assert all(runs[t].error is None for t in ("web_sources", "knowledge_base", "web_pages"))


def test_undo_leaves_alone_a_row_prod_changed_since_and_a_row_a_prod_row_references(sync_env):
    with sync_env.prod() as prod:
        have = {r[0] for r in prod.execute("SELECT id::text FROM web_pages").fetchall()}
    files = _newer_files(sync_env, 3)
    run_id, runs = _sync(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_files"))
    assert all(r.error is None for r in runs.values())
    with sync_env.prod() as prod:
        inserted_pages = sorted({r[0] for r in prod.execute("SELECT id::text FROM web_pages").fetchall()} - have)
        page, web_source = prod.execute("SELECT id::text, web_source_id::text FROM web_pages WHERE id = %s",
                                        [inserted_pages[0]]).fetchone()
    with psycopg.connect(sync_env.prod_url, autocommit=True) as prod:
        prod.execute("SET session_replication_role = replica")  # prod's app, past the test's guard
        prod.execute("INSERT INTO web_files (id, web_page_id, web_source_id, url, filename, file_type) "
                     "VALUES (gen_random_uuid(), %s, %s, 'https://prod.example/own.pdf', 'own.pdf', 'pdf')",
                     [page, web_source])
    allow(sync_env.prod_url, "web_pages", "DELETE", inserted_pages)
    with SyncContext(sync_env.settings()) as ctx:
        dry = {t.table: t for t in undo_run(ctx, run_id, undo_run_id=new_run_id(), dry_run=True)}
    assert dry["web_pages"].left == {page: "referenced by a web_files row that stays in prod"}
    inserted = {}
    for line in read_manifest(sync_env.export_dir, run_id):
        if line["op"] == "inserted":
            inserted.setdefault(line["table"], []).append(line["id"])
    for table, ids in inserted.items():
        allow(sync_env.prod_url, table, "DELETE", ids)
    edited = files[0]  # prod edits a row the run inserted: undo leaves it as prod has it, and its page
    with psycopg.connect(sync_env.prod_url, autocommit=True) as prod:
        prod.execute("SET session_replication_role = replica")
        prod.execute("UPDATE web_files SET filename = 'renamed in prod.pdf' WHERE id = %s", [edited])
    with SyncContext(sync_env.settings()) as ctx:
        undone = {t.table: t for t in undo_run(ctx, run_id, undo_run_id=new_run_id())}
    with sync_env.prod() as prod:
        edited_page = prod.execute("SELECT web_page_id::text FROM web_files WHERE id = %s", [edited]).fetchone()[0]
    assert undone["web_files"].left == {edited: "changed in prod since the run"}
    assert undone["web_files"].deleted == len(inserted["web_files"]) - 1
    assert undone["web_pages"].left == {p: "referenced by a web_files row that stays in prod"
                                        for p in (page, edited_page)}
    assert undone["web_pages"].deleted == len(inserted_pages) - len({page, edited_page})
    with sync_env.prod() as prod:
        assert prod.execute("SELECT filename FROM web_files WHERE id = %s", [edited]).fetchone()[0] == \
            "renamed in prod.pdf"
        assert prod.execute("SELECT count(*) FROM web_pages WHERE id = %s", [page]).fetchone()[0] == 1


#: a prod rule that silently keeps one row from being updated (a BEFORE UPDATE trigger returning NULL)
SWALLOW_ONE_UPDATE = """
CREATE FUNCTION websync_swallow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.id = '{id}' THEN RETURN NULL; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER websync_swallow BEFORE UPDATE ON web_files FOR EACH ROW EXECUTE FUNCTION websync_swallow();
"""


def test_an_update_prod_silently_swallows_fails_the_blocking_check(sync_env, monkeypatch):
    from dagster import AssetKey, DagsterInstance

    from websync_dagster.definitions import defs

    sync_all(sync_env.settings())
    files = _newer_files(sync_env, 3)
    prod_ddl(sync_env.prod_url, SWALLOW_ONE_UPDATE.format(id=files[1]))
    monkeypatch.setenv("WEBSYNC_UPDATE_NEWER", "web_files")
    result = defs().resolve_job_def("websync_job").execute_in_process(
        instance=DagsterInstance.from_config(str(sync_env.dagster_home)), raise_on_error=False)
    assert not result.success
    checks = {(c.asset_key, c.check_name): c for c in result.get_asset_check_evaluations()}
    landed = checks[(AssetKey(["web_files", "prod_upserted"]), "all_shipped_rows_in_prod")]
    assert not landed.passed
    assert landed.description == (f"1 rows newer in dev were neither updated, nor rejected, nor changed by prod "
                                  f"({files[1]})")
    assert landed.metadata["update_lost"].value == 1 and landed.metadata["updated"].value == 2


def test_an_update_prod_refuses_is_rejected_with_its_reason_and_one_clashing_on_another_key_is_skipped(sync_env):
    sync_all(sync_env.settings())
    with sync_env.dev() as dev:
        refused, clashing, fine = ids_of(dev, "web_files", 3)
        dev.execute("UPDATE web_files SET file_type = 'zip', updated_at = now() WHERE id = %s", [refused])
        dev.execute("UPDATE web_files SET url = 'https://clash.example/x.pdf', updated_at = now() WHERE id = %s",
                    [clashing])
        dev.execute("UPDATE web_files SET filename = 'better.pdf', updated_at = now() WHERE id = %s", [fine])
        page, source = dev.execute("SELECT web_page_id::text, web_source_id::text FROM web_files WHERE id = %s",
                                   [clashing]).fetchone()
    prod_ddl(sync_env.prod_url, "ALTER TABLE web_files ADD CONSTRAINT no_zip CHECK (file_type <> 'zip')")
    with psycopg.connect(sync_env.prod_url, autocommit=True) as prod:
        prod.execute("SET session_replication_role = replica")  # prod's own row, holding the url dev moves to
        prod.execute("INSERT INTO web_files (id, web_page_id, web_source_id, url, filename, file_type) VALUES "
                     "(gen_random_uuid(), %s, %s, 'https://clash.example/x.pdf', 'x.pdf', 'pdf')", [page, source])
    with sync_env.prod() as prod:
        before = rows_by_id(prod, "web_files", [refused, clashing])
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_files", "UPDATE", [refused, clashing, fine])
    run_id, runs = _sync(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_files"))
    update = runs["web_files"].update
    assert runs["web_files"].error is None and runs["web_files"].landed
    assert (update.updated, update.rejected, update.skipped) == (1, 1, {"web_files_web_page_id_url_key": 1})
    with sync_env.prod() as prod:
        assert rows_by_id(prod, "web_files", [refused, clashing]) == before  # the old rows stay
        assert prod.execute("SELECT filename FROM web_files WHERE id = %s", [fine]).fetchone()[0] == "better.pdf"
    (reject,) = [json.loads(line) for line in Path(update.reject_file).read_text(encoding="utf-8").splitlines()]
    assert reject["id"] == refused and "no_zip" in reject["reason"] and reject["row"]["file_type"] == "zip"
    assert run_id in update.reject_file and update.reject_file.endswith(".update.rejects.jsonl")


def test_a_row_prod_deletes_while_the_run_looks_at_it_is_left_as_prod_has_it_not_lost(sync_env, monkeypatch):
    sync_all(sync_env.settings())
    files = _newer_files(sync_env, 3)
    real = units.find_newer

    def then_prod_deletes_one(dev, session, plan):
        newer = real(dev, session, plan)
        with psycopg.connect(sync_env.prod_url, autocommit=True) as prod:
            prod.execute("SET session_replication_role = replica")  # prod's app, past the test's guard
            prod.execute("DELETE FROM web_files WHERE id = %s", [newer.ids[0]])
        return newer

    monkeypatch.setattr(units, "find_newer", then_prod_deletes_one)
    _, runs = _sync(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_files"))
    update = runs["web_files"].update
    assert (update.updated, update.left_unchanged, update.lost) == (2, 1, 0) and runs["web_files"].landed
    del files
