"""Prod's triggers held off while websync updates a table's rows (WEBSYNC_UPDATE_TRIGGERS_OFF): the rows a run
updates are dev's rows on every shipped column, ``updated_at`` too (prod's BEFORE UPDATE trigger would stamp the
sync's time), an undo gives prod back its checksums exactly, and prod's catalog is as it was after every unit, one
that commits and one rolled back. On real servers and every transport, with prod's guards letting through only the
rows and the one ALTER TABLE a test expects."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from psycopg import sql

from websync_dagster_tests.engine.test_update_newer import TABLES, _sync, _undo
from websync_dagster_tests.helpers import manifest_full_at_commit, rows_by_id, sync_all
from websync_dagster_tests.update_helpers import (
    allow,
    allow_alter,
    arm_allowing_guard,
    checksum,
    ids_of,
    prod_ddl,
    recrawl,
    triggers_of,
)

HELD = {"update_newer": ("web_pages:updated_at",), "update_triggers_off": ("web_pages:web_pages_updated_at",)}


def _recrawled(sync_env, n: int) -> list[str]:
    """Prod holds every dev row, then dev re-crawls ``n`` pages; prod's guards let websync update those."""
    sync_all(sync_env.settings())
    with sync_env.dev() as dev:
        pages = ids_of(dev, "web_pages", n)
        recrawl(dev, "web_pages", pages, "extracted_text", "re-crawled ")
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_pages", "UPDATE", pages)
    allow_alter(sync_env.prod_url, "web_pages")
    return pages


def test_rows_updated_with_prods_trigger_held_off_are_devs_rows_and_undo_gives_back_prods_checksums(
        sync_env, prod_via):
    _updated_with_the_trigger_held_off_then_undone(sync_env, prod_via(sync_env).model_copy(update=HELD))


def test_the_same_on_postgresql_15_prods_version(sync_env15):
    _updated_with_the_trigger_held_off_then_undone(sync_env15, sync_env15.settings().model_copy(update=HELD))


def _updated_with_the_trigger_held_off_then_undone(sync_env, settings) -> None:
    pages = _recrawled(sync_env, 4)
    with sync_env.prod() as prod:
        before = {t: checksum(prod, t) for t in TABLES}
        triggers = triggers_of(prod, "web_pages")
        before_rows = rows_by_id(prod, "web_pages", pages)
    assert triggers["web_pages_updated_at"] == "O"

    run_id, runs = _sync(settings)

    assert all(r.error is None for r in runs.values()), {t: r.error for t, r in runs.items()}
    assert runs["web_pages"].update.updated == 4
    plan = runs["web_pages"].load.plan
    assert "updated_at" in plan.shipped
    with sync_env.dev() as dev, sync_env.prod() as prod:
        assert rows_by_id(prod, "web_pages", pages, list(plan.shipped)) == rows_by_id(dev, "web_pages", pages,
                                                                                      list(plan.shipped))
        after_rows = rows_by_id(prod, "web_pages", pages)
        for page in pages:
            for column in plan.prod_only:
                assert after_rows[page][column] == before_rows[page][column], (page, column)
        assert triggers_of(prod, "web_pages") == triggers  # enabled again before each unit committed
        for table in ("web_sources", "knowledge_base", "web_files"):
            assert checksum(prod, table) == before[table]
        synced = checksum(prod, "web_pages")
        with prod.transaction(force_rollback=True):  # prod's own update still gets its trigger's stamp
            stamped = prod.execute("UPDATE web_pages SET title = title WHERE id = %s::uuid "
                                   "RETURNING updated_at = now()", [pages[0]]).fetchone()[0]
        assert stamped is True

    undo_id, undone = _undo(settings, run_id)
    assert undone["web_pages"].restored == 4
    with sync_env.prod() as prod:
        assert {t: checksum(prod, t) for t in TABLES} == before  # updated_at too: the trigger was held off
        assert triggers_of(prod, "web_pages") == triggers
    _, redone = _undo(settings, undo_id)
    assert redone["web_pages"].restored == 4
    with sync_env.prod() as prod:
        assert checksum(prod, "web_pages") == synced


def test_a_unit_rolled_back_with_the_trigger_held_off_leaves_prods_trigger_and_rows_as_they_were(
        sync_env, prod_via, monkeypatch):
    pages = _recrawled(sync_env, 3)
    with sync_env.prod() as prod:
        rows, triggers = checksum(prod, "web_pages"), triggers_of(prod, "web_pages")
    manifest_full_at_commit(monkeypatch, "web_pages")
    _, runs = _sync(prod_via(sync_env).model_copy(update=HELD))
    assert "the unit was rolled back before its commit" in str(runs["web_pages"].error), runs["web_pages"].error
    with sync_env.prod() as prod:
        assert checksum(prod, "web_pages") == rows
        assert triggers_of(prod, "web_pages") == triggers
        assert all(r["extracted_text"].startswith("re-crawled ") is False
                   for r in rows_by_id(prod, "web_pages", pages).values())


def test_a_trigger_prod_lacks_stops_only_that_table_with_one_line(sync_env):
    _recrawled(sync_env, 2)
    with sync_env.prod() as prod:
        rows = checksum(prod, "web_pages")
    _, runs = _sync(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_pages",
                                      WEBSYNC_UPDATE_TRIGGERS_OFF="web_pages:pages_stamp"))
    assert str(runs["web_pages"].error) == (
        "web_pages: WEBSYNC_UPDATE_TRIGGERS_OFF: prod's web_pages has no trigger pages_stamp (its row triggers on "
        "UPDATE: web_pages_updated_at, websync_guard_rows): nothing of it was written")
    assert all(runs[t].error is None for t in ("web_sources", "knowledge_base"))
    with sync_env.prod() as prod:
        assert checksum(prod, "web_pages") == rows


@pytest.fixture
def not_owner(sync_env):
    """Prod's URL for a user that may read, insert and update the tables but owns none of them."""
    role = f"websync_writer_{sync_env.prod_url.rsplit('/', 1)[1]}"
    name = sql.Identifier(role)
    prod_ddl(sync_env.prod_url, sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'writer'").format(name),
             sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(name),
             sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}").format(name))
    url = urlsplit(sync_env.prod_url)
    yield url._replace(netloc=f"{role}:writer@{url.netloc.rpartition('@')[2]}").geturl()
    prod_ddl(sync_env.prod_url, sql.SQL("DROP OWNED BY {}").format(name), sql.SQL("DROP ROLE {}").format(name))


def test_holding_a_trigger_off_without_owning_the_table_stops_only_that_table_with_one_line(sync_env, not_owner):
    _recrawled(sync_env, 2)
    _, runs = _sync(sync_env.settings(WEBSYNC_PROD_URL=not_owner, WEBSYNC_UPDATE_NEWER="web_pages",
                                      WEBSYNC_UPDATE_TRIGGERS_OFF="web_pages:web_pages_updated_at"))
    assert str(runs["web_pages"].error).startswith(
        "web_pages: WEBSYNC_UPDATE_TRIGGERS_OFF: holding prod's trigger web_pages_updated_at off needs prod's user "
        "to own web_pages (ALTER TABLE): nothing of it was written"), runs["web_pages"].error
    assert all(runs[t].error is None for t in ("web_sources", "knowledge_base")), runs
