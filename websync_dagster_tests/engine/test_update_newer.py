"""Opt-in newer-wins updates (issue 18) on real servers and every transport: a table opted in gets exactly its
rows that dev holds newer updated (before-images on disk first, the manifest after), rows prod holds newer are
never touched, and a table not opted in sees no UPDATE (prod's guard refuses any other)."""

from __future__ import annotations

import json
import os

import psycopg

from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run import run_tables
from websync_dagster.engine.run_files import read_before_images, read_manifest
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.undo.apply import undo_run
from websync_dagster_tests.helpers import rows_by_id, sync_all, table_snapshot
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard, checksum, edit_in_prod, ids_of, recrawl

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


# --- undo ------------------------------------------------------------------------------------------------

def _columns(conn, table: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                                       "AND NOT attisdropped ORDER BY attnum", [table]).fetchall()]


def _undo(settings, run_id, *, dry_run=False):
    undo_id = new_run_id()
    with SyncContext(settings) as ctx:
        return undo_id, {t.table: t for t in undo_run(ctx, run_id, undo_run_id=undo_id, dry_run=dry_run)}


def test_undo_deletes_what_a_run_inserted_and_restores_what_it_updated_and_undo_of_undo_brings_it_back(
        sync_env, prod_via):
    sync_all(sync_env.settings())
    with sync_env.dev() as dev:
        files = ids_of(dev, "web_files", 3)
        recrawl(dev, "web_files", files, "text_content", "re-read ")
        dev.execute("UPDATE web_files SET updated_at = now() WHERE id = ANY(%s::uuid[])", [files])
        pages = ids_of(dev, "web_pages", 2)
        recrawl(dev, "web_pages", pages, "extracted_text", "re-crawled ")
    with sync_env.prod() as prod:
        gone = ids_of(prod, "web_files", 2, offset=10)  # prod lacks these: the run inserts them again
    with psycopg.connect(sync_env.prod_url, autocommit=True) as prod:
        prod.execute("SET session_replication_role = replica")
        prod.execute("DELETE FROM web_files WHERE id = ANY(%s::uuid[])", [gone])
    with sync_env.prod() as prod:
        before = {t: checksum(prod, t) for t in TABLES}
        # prod's BEFORE UPDATE trigger sets web_pages.updated_at to the time of each update, the restore's too
        page_columns = [c for c in _columns(prod, "web_pages") if c != "updated_at"]
        pages_before = checksum(prod, "web_pages", page_columns)
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_files", "UPDATE", files)
    allow(sync_env.prod_url, "web_pages", "UPDATE", pages)
    allow(sync_env.prod_url, "web_files", "DELETE", gone)
    settings = prod_via(sync_env).model_copy(update={"update_newer": ("web_files:updated_at", "web_pages:updated_at")})
    run_id, runs = _sync(settings)
    assert all(r.error is None for r in runs.values()), {t: r.error for t, r in runs.items()}
    assert runs["web_files"].update.updated == 3 and runs["web_files"].load.result.inserted == 2
    with sync_env.dev() as dev, sync_env.prod() as prod:
        synced = {t: checksum(prod, t) for t in TABLES}
        # web_files has no trigger of prod's rewriting a row: its updated rows are dev's on every shipped column,
        # the version column too
        shipped = runs["web_files"].load.plan.shipped
        assert "updated_at" in shipped and "text_content" in shipped
        assert rows_by_id(prod, "web_files", files, shipped) == rows_by_id(dev, "web_files", files, shipped)

    _, dry = _undo(settings, run_id, dry_run=True)
    assert (dry["web_files"].deleted, dry["web_files"].restored) == (2, 3)
    with sync_env.prod() as prod:
        assert {t: checksum(prod, t) for t in TABLES} == synced  # the dry run wrote nothing

    undo_id, undone = _undo(settings, run_id)
    assert (undone["web_files"].deleted, undone["web_files"].restored, undone["web_pages"].restored) == (2, 3, 2)
    with sync_env.prod() as prod:
        assert checksum(prod, "web_files") == before["web_files"]  # no trigger rewrites web_files: exactly as before
        assert checksum(prod, "web_pages", page_columns) == pages_before
        for table in ("web_sources", "knowledge_base"):
            assert checksum(prod, table) == before[table]
    allow(sync_env.prod_url, "web_files", "UPDATE", files)
    _, redone = _undo(settings, undo_id)
    assert (redone["web_files"].inserted, redone["web_files"].restored) == (2, 3)
    with sync_env.prod() as prod:
        assert checksum(prod, "web_files") == synced["web_files"]


# --- what the dry run, the diff and the planning say -----------------------------------------------------

def test_the_dry_run_counts_would_update_with_a_change_report_and_the_diff_splits_changed_by_version(sync_env):
    from websync_dagster.engine.dry_run import dry_run
    from websync_dagster.engine.run import run_diff

    sync_all(sync_env.settings())
    with sync_env.dev() as dev:
        pages = ids_of(dev, "web_pages", 5)
        recrawl(dev, "web_pages", pages[:3], "extracted_text", "re-crawled ")
    edit_in_prod(sync_env.prod_url, "web_pages", pages[3:], "title", "edited in prod ")
    with sync_env.prod() as prod:
        before = table_snapshot(prod, "web_pages")
    settings = sync_env.settings(WEBSYNC_UPDATE_NEWER="web_pages")
    (row,) = [t for t in dry_run(settings) if t.table == "web_pages"]
    assert (row.would_update, row.prod_newer_kept) == (3, 2)
    assert row.change_report["rows"] == 3
    assert row.change_report["columns"]["extracted_text"] == 3 and row.change_report["columns"]["updated_at"] == 3
    assert "title" not in row.change_report["columns"]
    (diff,) = [d for d in run_diff(settings) if d.table == "web_pages"]
    assert (diff.newer_in_dev, diff.newer_in_prod, diff.version_only) == (3, 2, 0) and diff.changed >= 5
    # the sample's drift: rows prod holds with other content and the same version
    assert diff.same_version_differs == diff.changed - 5 > 0
    with sync_env.prod() as prod:
        assert table_snapshot(prod, "web_pages") == before  # neither wrote anything
    (plain,) = [d for d in run_diff(sync_env.settings()) if d.table == "web_pages"]
    assert plain.newer_in_dev is None and plain.version_only is None and "newer in dev" not in plain.summary()


def _diff_of(settings, table: str, **kwargs):
    from websync_dagster.engine.run import run_diff

    (diff,) = [d for d in run_diff(settings, **kwargs) if d.table == table]
    return diff


def _keep_only(sync_env, pages: list[str]) -> None:
    """Both sides' web_pages cut down to ``pages`` (rows they hold the same): web_pages in sync, nothing else in it."""
    with sync_env.dev() as dev:
        dev.execute("DELETE FROM web_files")
        dev.execute("DELETE FROM web_pages WHERE id <> ALL(%s::uuid[])", [pages])
    with psycopg.connect(sync_env.prod_url, autocommit=True) as prod:
        prod.execute("SET session_replication_role = replica")  # prod's guard held off for the set-up
        prod.execute("DELETE FROM web_pages WHERE id <> ALL(%s::uuid[])", [pages])


def test_rows_prod_stamped_on_update_differ_only_in_their_version_and_the_diff_reads_them_in_sync(
        sync_env, prod_via, tmp_path):
    sync_all(sync_env.settings())
    with sync_env.dev() as dev, sync_env.prod() as prod:
        candidates = ids_of(dev, "web_pages", 20)
        dev_rows, prod_rows = rows_by_id(dev, "web_pages", candidates), rows_by_id(prod, "web_pages", candidates)
        same = [i for i in candidates if i in prod_rows and all(
            prod_rows[i][c] == v for c, v in dev_rows[i].items() if c in prod_rows[i])]
    pages = same[:6]
    assert len(pages) == 6
    _keep_only(sync_env, pages)
    settings = prod_via(sync_env).model_copy(update={"update_newer": ("web_pages:updated_at",)})
    assert _diff_of(settings, "web_pages").in_sync
    stamped = pages[:3]
    with sync_env.dev() as dev:
        recrawl(dev, "web_pages", stamped, "extracted_text", "re-crawled ")
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_pages", "UPDATE", stamped)
    _, runs = _sync(settings)
    assert runs["web_pages"].error is None and runs["web_pages"].update.updated == 3
    with sync_env.dev() as dev, sync_env.prod() as prod:
        dev_at = rows_by_id(dev, "web_pages", stamped, ["updated_at"])
        prod_at = rows_by_id(prod, "web_pages", stamped, ["updated_at"])
        assert all(prod_at[i] != dev_at[i] for i in stamped)  # prod's trigger stamped the time of the update

    synced = _diff_of(settings, "web_pages")
    assert (synced.changed, synced.version_only) == (0, 3)
    assert (synced.newer_in_dev, synced.newer_in_prod, synced.same_version_differs) == (0, 0, 0)
    assert synced.in_sync and synced.summary() == (
        "web_pages: 0 missing in prod, 0 only in prod, 0 changed; 3 differ only in updated_at, content the same")
    plain = _diff_of(prod_via(sync_env), "web_pages")  # not opted in: the versions are not compared
    assert (plain.changed, plain.version_only) == (3, None)

    with sync_env.dev() as dev:
        # newer in dev with other content; and one of the stamped rows touched in dev: newer in dev, same content
        recrawl(dev, "web_pages", pages[3:4], "extracted_text", "re-crawled again ")
        dev.execute("UPDATE web_pages SET title = title WHERE id = %s::uuid", [stamped[0]])
    edit_in_prod(sync_env.prod_url, "web_pages", pages[4:5], "title", "edited in prod ")  # newer in prod, other content
    cache = tmp_path / "diff-cache"
    for diff in (_diff_of(settings, "web_pages"), _diff_of(settings, "web_pages", cache_dir=cache),
                 _diff_of(settings, "web_pages", cache_dir=cache)):
        assert (diff.changed, diff.newer_in_dev, diff.newer_in_prod, diff.same_version_differs, diff.version_only) == (
            2, 1, 1, 0, 3), diff
        assert not diff.in_sync and diff.summary().endswith(
            "2 changed (1 newer in dev, 1 newer in prod, 0 same version); "
            "3 differ only in updated_at, content the same")


def test_a_version_column_missing_or_not_ordered_stops_only_that_table_with_one_line(sync_env):
    sync_all(sync_env.settings())
    _, runs = _sync(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_pages:no_such_column,web_files:url"))
    assert str(runs["web_pages"].error) == ("web_pages: WEBSYNC_UPDATE_NEWER: the version column no_such_column is "
                                            "not in dev's web_pages: no row of it was updated (name another column, "
                                            "or leave web_pages out)")
    assert "the version column url is text, which does not order versions" in str(runs["web_files"].error)
    assert runs["web_sources"].error is None and runs["knowledge_base"].error is None


def test_a_sync_with_nothing_newer_does_not_import_pandas(sync_env):
    import subprocess
    import sys

    sync_all(sync_env.settings())
    program = (
        "import sys\n"
        "from websync_dagster.core.settings import load_settings\n"
        "from websync_dagster.core.tables import DECLARED_DEPS\n"
        "from websync_dagster.engine.context import SyncContext\n"
        "from websync_dagster.engine.run import run_tables\n"
        "s = load_settings(env_file=None)\n"
        "with SyncContext(s) as ctx:\n"
        "    runs = list(run_tables(ctx, export=s.tables, load=s.tables, declared_deps=DECLARED_DEPS))\n"
        "print(sorted(r.table for r in runs if r.update is not None and r.error is None), 'pandas' in sys.modules)\n")
    env = {**sync_env.env, "WEBSYNC_UPDATE_NEWER": "web_pages,knowledge_base", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120,
                          cwd=str(sync_env.export_dir.parent))
    assert done.returncode == 0, done.stderr
    # the update path ran for both tables, found nothing newer, and pandas was never imported
    assert done.stdout.strip() == "['knowledge_base', 'web_pages'] False"
