"""Opt-in newer-wins updates (issue 18) on real servers and every transport: a table opted in gets exactly its
rows that dev holds newer updated (before-images on disk first, the manifest after), rows prod holds newer are
never touched, and a table not opted in sees no UPDATE (prod's guard refuses any other)."""

from __future__ import annotations

import json

from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run import run_tables
from websync_dagster.engine.run_files import read_before_images, read_manifest
from websync_dagster.engine.run_id import new_run_id
from websync_dagster_tests.helpers import rows_by_id, sync_all, table_snapshot
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard, edit_in_prod, ids_of, recrawl

TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")


def _sync(settings):
    run_id = new_run_id()
    with SyncContext(settings) as ctx:
        runs = {r.table: r for r in run_tables(ctx, export=TABLES, load=TABLES, declared_deps=DECLARED_DEPS,
                                               run_id=run_id)}
    return run_id, runs


def test_only_the_rows_dev_holds_newer_are_updated_and_their_before_images_come_first(sync_env, prod_via):
    sync_all(sync_env.settings())  # prod has every dev row now
    with sync_env.dev() as dev, sync_env.prod() as prod:
        page_ids = ids_of(dev, "web_pages", 6)
        newer_in_dev, newer_in_prod = page_ids[:4], page_ids[4:]
        before = rows_by_id(prod, "web_pages", page_ids)
        untouched = {t: table_snapshot(prod, t) for t in ("web_sources", "knowledge_base", "web_files")}
        recrawl(dev, "web_pages", page_ids, "extracted_text", "re-crawled ")
    edit_in_prod(sync_env.prod_url, "web_pages", newer_in_prod, "extracted_text", "edited in prod ")
    with sync_env.prod() as prod:
        prod_edited = {i: table_snapshot(prod, "web_pages")[i] for i in newer_in_prod}
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_pages", "UPDATE", newer_in_dev)

    run_id, runs = _sync(prod_via(sync_env).model_copy(update={"update_newer": ("web_pages:updated_at",)}))

    assert all(r.error is None for r in runs.values()), {t: r.error for t, r in runs.items()}
    update = runs["web_pages"].update
    assert update is not None and update.rejected == 0, update
    assert (update.updated, update.prod_newer_kept) == (4, 2)
    assert all(runs[t].update is None for t in ("web_sources", "knowledge_base", "web_files"))
    with sync_env.dev() as dev, sync_env.prod() as prod:
        shipped = [c for c in runs["web_pages"].load.plan.shipped if c != "updated_at"]
        assert rows_by_id(prod, "web_pages", newer_in_dev, shipped) == rows_by_id(dev, "web_pages", newer_in_dev,
                                                                                   shipped)
        after = rows_by_id(prod, "web_pages", newer_in_dev)
        for page in newer_in_dev:  # prod-only columns as they were
            for column in runs["web_pages"].load.plan.prod_only:
                assert after[page][column] == before[page][column], (page, column)
        assert {i: table_snapshot(prod, "web_pages")[i] for i in newer_in_prod} == prod_edited
        assert {t: table_snapshot(prod, t) for t in untouched} == untouched
    images = read_before_images(sync_env.export_dir, "web_pages", run_id)
    assert {i for i, _ in images} >= set(newer_in_dev)
    for (page, _), image in images.items():
        assert image["extracted_text"] == before[page]["extracted_text"]
    manifest = [m for m in read_manifest(sync_env.export_dir, run_id) if m["op"] == "updated"]
    assert sorted(m["id"] for m in manifest) == sorted(newer_in_dev)
    assert all(m["table"] == "web_pages" and m["before"] and m["hash"] for m in manifest)
    lines = (sync_env.export_dir / "before" / f"web_pages_{run_id}.jsonl").read_text().splitlines()
    assert all(json.loads(line)["table"] == "web_pages" for line in lines)


def test_a_run_with_nothing_newer_updates_nothing(sync_env):
    sync_all(sync_env.settings())
    run_id, runs = _sync(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_pages,knowledge_base"))
    assert all(r.error is None for r in runs.values()), {t: r.error for t, r in runs.items()}
    for table in ("web_pages", "knowledge_base"):
        assert runs[table].update is not None and runs[table].update.updated == 0
        assert runs[table].update.rejected == 0 and runs[table].update.before_image_file is None
