"""The diff with a cache (sync/diff_cache.py): a tick re-reads whole rows only in buckets that changed.

Real servers: the answers are checked against a brute-force download of both tables, and the bytes a
tick reads on prod are taken from prod's own ``pg_statio_user_tables``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import psycopg
import pytest

from websync_dagster.engine import diff as diff_module
from websync_dagster.engine.diff import diff_table, hashed_columns
from websync_dagster.engine.planning import plan_tables
from websync_dagster.engine.run import run_diff
from websync_dagster.engine.table_diff import TableDiff
from websync_dagster.transport.direct import PsycopgSession
from websync_dagster_tests.defs.test_sensors import _brute_force
from websync_dagster_tests.helpers import sync_all

TABLES = ["web_sources", "knowledge_base", "web_pages", "web_files"]
#: pages with a text far above the TOAST threshold (about 32 kB of hex each, stored out of line)
BIG_PAGES = 600
#: bytes a tick may read on prod, as a share of the table's total size (heap, TOAST, indexes)
SMALL_SHARE = 0.05


def _add_big_pages(dev: psycopg.Connection, count: int, tag: str) -> None:
    dev.execute(
        "INSERT INTO web_pages (id, web_source_id, url, url_hash, extracted_text) "
        "SELECT gen_random_uuid(), (SELECT id FROM web_sources ORDER BY id LIMIT 1), "
        "'https://big.example/' || %(tag)s || '/' || i, md5(%(tag)s || i), "
        "(SELECT string_agg(md5(random()::text || i || g), '') FROM generate_series(1, 1000) AS g) "
        "FROM generate_series(1, %(count)s) AS i", {"tag": tag, "count": count})


def _change_one_byte_in_prod(prod: psycopg.Connection) -> str:
    """One character of one large (TOASTed) extracted_text, past the guard that forbids UPDATE in prod."""
    prod.execute("SET session_replication_role = replica")
    (page,) = prod.execute("SELECT id::text FROM web_pages WHERE url LIKE 'https://big.example/%' "
                           "ORDER BY id LIMIT 1").fetchone()
    prod.execute("UPDATE web_pages SET extracted_text = overlay(extracted_text PLACING 'Z' FROM 20000 FOR 1) "
                 "WHERE id = %s", [page])
    prod.execute("RESET session_replication_role")
    return page


def _by_table(diffs: list[TableDiff]) -> dict[str, TableDiff]:
    return {d.table: d for d in diffs}


def _figures(diff: TableDiff) -> tuple:
    return diff.dev_rows, diff.prod_rows, diff.missing_in_prod, diff.only_in_prod, diff.changed


def _expected(sync_env) -> dict[str, tuple]:
    """What a full download of both sides finds, per table."""
    with sync_env.dev() as dev, sync_env.prod() as prod:
        plans = plan_tables(PsycopgSession(dev), PsycopgSession(prod), TABLES)
        return {t: _brute_force(dev, prod, t, hashed_columns(p)) for t, p in plans.items()}


def _settled_blocks(url: str, table: str) -> int:
    """Blocks of ``table`` (heap, TOAST and their indexes) read or found in cache so far, once every other
    session of the database has ended (a backend hands its counters over when it exits)."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()").fetchone()[0]:
            assert time.monotonic() < deadline, "other sessions of the test database did not end"
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        (blocks,) = conn.execute(
            "SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) + coalesce(toast_blks_read, 0) "
            "+ coalesce(toast_blks_hit, 0) + coalesce(idx_blks_read, 0) + coalesce(idx_blks_hit, 0) "
            "+ coalesce(tidx_blks_read, 0) + coalesce(tidx_blks_hit, 0) FROM pg_statio_user_tables "
            "WHERE relname = %s", [table]).fetchone()
    return blocks


def _table_bytes(url: str, table: str) -> tuple[int, int]:
    """(total size of the table with TOAST and indexes, block size)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_total_relation_size(%s::regclass), current_setting('block_size')::int",
                            [table]).fetchone()


def _prod_bytes_of_a_tick(sync_env, cache_dir: Path, table: str = "web_pages") -> tuple[dict[str, TableDiff], int]:
    before = _settled_blocks(sync_env.prod_url, table)
    diffs = _by_table(run_diff(sync_env.settings(), cache_dir=cache_dir))
    _, block = _table_bytes(sync_env.prod_url, table)
    return diffs, (_settled_blocks(sync_env.prod_url, table) - before) * block


@pytest.fixture
def big_synced(sync_env):
    """The sample data plus BIG_PAGES large pages, synced into prod."""
    with sync_env.dev() as dev:
        _add_big_pages(dev, BIG_PAGES, "a")
    sync_all(sync_env.settings())
    with sync_env.prod() as prod:
        prod.execute("VACUUM ANALYZE web_pages")  # the hint bits set now, not during a measured tick
    return sync_env


def test_incremental_diff_finds_exactly_what_a_full_comparison_finds(sync_env, prod_via, tmp_path, monkeypatch):
    cache = tmp_path / "diff-cache"
    with sync_env.dev() as dev:
        _add_big_pages(dev, 20, "a")
    sync_all(sync_env.settings())
    settings = prod_via(sync_env)
    first = _by_table(run_diff(settings, cache_dir=cache))
    assert {t: _figures(d) for t, d in first.items()} == _expected(sync_env)
    with sync_env.dev() as dev:  # inserts, updates and deletes in dev; one byte of a TOASTed text in prod
        _add_big_pages(dev, 300, "b")
        dev.execute("UPDATE web_pages SET title = coalesce(title, '') || ' (modifié)' WHERE id IN "
                    "(SELECT id FROM web_pages WHERE url LIKE '%/page/1_' ORDER BY id LIMIT 3)")
        dev.execute("DELETE FROM web_files WHERE id IN (SELECT id FROM web_files ORDER BY id LIMIT 4)")
        dev.execute("DELETE FROM web_pages WHERE id IN (SELECT id FROM web_pages WHERE id NOT IN "
                    "(SELECT web_page_id FROM web_files) ORDER BY id DESC LIMIT 5)")
    with sync_env.prod() as prod:
        _change_one_byte_in_prod(prod)
    monkeypatch.setattr(diff_module, "LEAF_ROWS", 2)  # small leaves: the bisection goes below the cached level
    expected = _expected(sync_env)
    incremental = _by_table(run_diff(settings, cache_dir=cache))
    assert {t: _figures(d) for t, d in incremental.items()} == expected
    pages, before = incremental["web_pages"], first["web_pages"]
    assert pages.missing_in_prod > before.missing_in_prod and pages.only_in_prod > before.only_in_prod
    assert pages.changed > before.changed and incremental["web_files"].only_in_prod > first["web_files"].only_in_prod
    assert {t: _figures(d) for t, d in _by_table(run_diff(settings)).items()} == expected  # no cache: the same
    again = _by_table(run_diff(settings, cache_dir=cache))
    assert {t: _figures(d) for t, d in again.items()} == expected
    assert all(d.rehashed_buckets == 0 for d in again.values())


def test_a_tick_with_nothing_changed_reads_a_small_share_of_prod(big_synced, tmp_path):
    cache = tmp_path / "diff-cache"
    total, _ = _table_bytes(big_synced.prod_url, "web_pages")
    first, first_bytes = _prod_bytes_of_a_tick(big_synced, cache)
    assert first_bytes > 0.5 * total  # the measurement sees the TOASTed texts when they are read
    second, second_bytes = _prod_bytes_of_a_tick(big_synced, cache)
    assert {t: _figures(d) for t, d in second.items()} == {t: _figures(d) for t, d in first.items()}
    assert any(not d.in_sync for d in second.values())  # differences that last (rows prod refused...)
    assert all(d.rehashed_buckets == 0 and d.queries == 1 for d in second.values())  # ...are not bisected again
    assert second_bytes <= SMALL_SHARE * total, f"{second_bytes} bytes read of {total}"


def test_one_byte_changed_in_a_toasted_text_of_prod_is_found(big_synced, tmp_path):
    cache = tmp_path / "diff-cache"
    before = _by_table(run_diff(big_synced.settings(), cache_dir=cache))["web_pages"]
    with big_synced.prod() as prod:
        _change_one_byte_in_prod(prod)
    total, _ = _table_bytes(big_synced.prod_url, "web_pages")
    after, read = _prod_bytes_of_a_tick(big_synced, cache)
    pages = after["web_pages"]
    assert pages.changed == before.changed + 1
    assert (pages.missing_in_prod, pages.only_in_prod) == (before.missing_in_prod, before.only_in_prod)
    assert pages.rehashed_buckets == 1  # the changed bucket on prod's side; dev's all kept
    assert read <= 2 * SMALL_SHARE * total, f"{read} bytes read of {total}"
    assert _figures(pages) == _expected(big_synced)["web_pages"]


def _cache_file(cache: Path, database: str, table: str) -> Path:
    for path in cache.glob("*.json"):
        identity = json.loads(path.read_text())["identity"]
        if (identity.get("database"), identity.get("table")) == (database, table):
            return path
    raise AssertionError(f"no cache file for {database}.{table}")


def test_a_damaged_cache_file_is_not_trusted(big_synced, tmp_path):
    cache = tmp_path / "diff-cache"
    prod_db = big_synced.prod_url.rsplit("/", 1)[1]
    baseline = _by_table(run_diff(big_synced.settings(), cache_dir=cache))["web_pages"].changed
    stale = json.loads(_cache_file(cache, prod_db, "web_pages").read_text())
    with big_synced.prod() as prod:
        _change_one_byte_in_prod(prod)
    assert _by_table(run_diff(big_synced.settings(), cache_dir=cache))["web_pages"].changed == baseline + 1
    # damage: today's signatures with yesterday's content figures, the file otherwise well formed
    path = _cache_file(cache, prod_db, "web_pages")
    damaged = json.loads(path.read_text())
    for bucket, figures in damaged["buckets"].items():
        figures[2] = stale["buckets"][bucket][2]
    path.write_text(json.dumps(damaged))
    pages = _by_table(run_diff(big_synced.settings(), cache_dir=cache))["web_pages"]
    assert pages.changed == baseline + 1 and pages.rehashed_buckets == len(damaged["buckets"])
    path.write_bytes(path.read_bytes()[:100])  # and a cut file
    pages = _by_table(run_diff(big_synced.settings(), cache_dir=cache))["web_pages"]
    assert pages.changed == baseline + 1 and pages.rehashed_buckets == len(damaged["buckets"])
    assert _figures(pages) == _expected(big_synced)["web_pages"]


def test_other_compared_columns_do_not_use_the_cached_figures(sync_env, tmp_path):
    from websync_dagster.engine.diff_cache import DiffCache

    cache = DiffCache(tmp_path / "diff-cache")
    sync_all(sync_env.settings())
    with sync_env.dev() as dev:
        dev.execute("UPDATE web_pages SET title = title || ' (modifié)' WHERE id IN "
                    "(SELECT id FROM web_pages ORDER BY id LIMIT 2)")
    with sync_env.dev() as dev, sync_env.prod() as prod:
        d, p = PsycopgSession(dev), PsycopgSession(prod)
        plan = plan_tables(d, p, TABLES)["web_pages"]
        without_title = dataclasses.replace(plan, overrides={**plan.overrides, "title": None})
        baseline = diff_table(d, p, without_title, cache).changed  # the titles are not compared
        with_title = diff_table(d, p, plan, cache)
        assert with_title.changed > baseline
        assert _figures(with_title) == _brute_force(dev, prod, "web_pages", hashed_columns(plan))


def test_an_unwritable_cache_directory_costs_time_not_the_answer(sync_env, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    diffs = _by_table(run_diff(sync_env.settings(), cache_dir=blocker / "diff-cache"))
    assert {t: _figures(d) for t, d in diffs.items()} == _expected(sync_env)
    again = _by_table(run_diff(sync_env.settings(), cache_dir=blocker / "diff-cache"))
    assert all(d.rehashed_buckets > 0 for d in again.values() if d.dev_rows)
