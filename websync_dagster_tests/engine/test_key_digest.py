"""The delta export reads prod's keys only where dev's ids differ (digests per bucket of ids), on real servers."""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from websync_dagster.core.settings import Settings
from websync_dagster.engine.delta import prod_keys
from websync_dagster.engine.export import ExportResult, export_table
from websync_dagster.engine.planning import plan_each_table
from websync_dagster.transport import make_transport
from websync_dagster.transport.base import ProdSession, Results, Step
from websync_dagster.transport.direct import DirectTransport, PsycopgSession
from websync_dagster_tests.helpers import sync_all

TABLES = ["web_sources", "knowledge_base", "web_pages", "web_files"]
CLASH_KEY = "web_pages_web_source_id_url_hash_key"
_databases = itertools.count()


class RecordingSession(ProdSession):
    """A real prod session that also notes each COPY it streams out and how many rows it carried."""

    def __init__(self, session: ProdSession) -> None:
        self.session = session
        self.streams: list[tuple[str, int]] = []

    def query(self, query: sql.Composable) -> list[dict[str, Any]]:
        return self.session.query(query)

    def copy_out(self, query: sql.Composable) -> Iterator[bytes]:
        lines = 0
        for chunk in self.session.copy_out(query):
            lines += chunk.count(b"\n")
            yield chunk
        self.streams.append((query.as_string(None), lines))

    def run_transaction(self, steps: Sequence[Step]) -> Results:
        return self.session.run_transaction(steps)


def export_deltas(dev_url: str, prod: str | Settings, out: Path, tables: Sequence[str] = TABLES,
                  candidate_limit: int | None = None) -> tuple[dict[str, ExportResult], list[tuple[str, int]]]:
    """Each table's delta export, as a sync makes it, and the key streams it read from prod (a URL, or the
    settings of a transport)."""
    transport = DirectTransport(prod) if isinstance(prod, str) else make_transport(prod)
    with psycopg.connect(dev_url, autocommit=True) as dev, transport.session() as real:
        prod = RecordingSession(real)
        planning = plan_each_table(PsycopgSession(dev), prod, tables)
        results = {}
        for table, plan in planning.every_plan().items():
            keys = prod_keys(prod, plan)
            if candidate_limit is not None:
                keys = replace(keys, candidate_limit=candidate_limit)
            results[table] = export_table(dev, table, plan.shipped, out / f"{table}_{next(_databases)}.csv",
                                          prod_keys=keys, overrides=plan.overrides)
    return results, prod.streams


def make_dev_equal_prod(sync_env) -> None:
    """After a sync, leave in dev only the rows prod holds (those it refused or skipped are gone)."""
    with sync_env.prod() as prod, sync_env.dev() as dev:
        for table in reversed(TABLES):
            ids = [r[0] for r in prod.execute(sql.SQL("SELECT id FROM {}").format(sql.Identifier(table)))]
            dev.execute(sql.SQL("DELETE FROM {} WHERE NOT id = ANY(%s)").format(sql.Identifier(table)), [ids])


def add_pages(sync_env, new: int) -> list[str]:
    """``new`` dev pages prod lacks (new ids and urls), the last of which prod then crawls itself: it holds
    that url under another id. Returns the new dev ids, the clashing one last."""
    with sync_env.dev() as dev, sync_env.prod() as prod:
        dev.execute("CREATE TEMP TABLE p AS SELECT * FROM web_pages ORDER BY id LIMIT %s", [new])
        dev.execute("UPDATE p SET id = gen_random_uuid(), url = url || '#new-' || n, "
                    "url_hash = md5(url || '#new-' || n) "
                    "FROM (SELECT id AS old, row_number() OVER (ORDER BY id) AS n FROM p) AS o WHERE p.id = o.old")
        dev.execute("INSERT INTO web_pages SELECT * FROM p")
        ids = [str(r[0]) for r in dev.execute("SELECT id FROM p ORDER BY url")]
        source, url, url_hash = dev.execute("SELECT web_source_id, url, url_hash FROM p WHERE id = %s",
                                            [ids[-1]]).fetchone()
        prod.execute("INSERT INTO web_pages (id, web_source_id, url, url_hash) VALUES (gen_random_uuid(), %s, %s, %s)",
                     [source, url, url_hash])
    return ids


def streamed_rows(streams: list[tuple[str, int]]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for query, n in streams:
        table = next(t for t in TABLES if f' FROM "{t}" ' in query)
        rows[table] = rows.get(table, 0) + n
    return rows


def rows_in_buckets_of(sync_env, ids: dict[str, list[str]]) -> dict[str, int]:
    """Per table, prod's rows in the buckets (first 2 characters of the id) of ``ids`` where dev has rows."""
    found = {}
    with sync_env.prod() as prod, sync_env.dev() as dev:
        for table in TABLES:
            held = {r[0] for r in dev.execute(sql.SQL("SELECT DISTINCT left(id::text, 2) FROM {}").format(
                sql.Identifier(table)))}
            buckets = [i[:2] for i in ids.get(table, []) if i[:2] in held]
            if buckets:
                found[table] = prod.execute(sql.SQL("SELECT count(*) FROM {} WHERE left(id::text, 2) = ANY(%s)")
                                            .format(sql.Identifier(table)), [buckets]).fetchone()[0]
    return found


def test_a_noop_sync_streams_only_the_ids_of_buckets_where_prod_has_its_own_rows(sync_env, tmp_path):
    sync_all(sync_env.settings())
    make_dev_equal_prod(sync_env)
    exports, streams = export_deltas(sync_env.dev_url, sync_env.prod_url, tmp_path)
    assert all(q.startswith('COPY (SELECT "t"."id" FROM ') for q, _ in streams), f"not only ids: {streams}"
    assert streamed_rows(streams) == rows_in_buckets_of(sync_env, sync_env.facts.prod_only)
    for table, export in exports.items():
        assert (export.rows, export.clashes) == (0, {}), table
        assert export.already_in_prod == export.dev_rows > 0, table


def test_a_noop_with_the_same_ids_on_both_sides_reads_no_key_of_prod(servers, tmp_path):
    dev_url, prod_url = _pair(servers)
    rows = {f"{n:04x}-{n}": f"https://x/{n}" for n in range(500)}
    _fill(dev_url, rows)
    _fill(prod_url, rows)
    exports, streams = export_deltas(dev_url, prod_url, tmp_path, ["kv"])
    assert streams == []
    assert (exports["kv"].rows, exports["kv"].already_in_prod) == (0, 500)


def test_a_small_delta_streams_a_part_of_prod_and_still_skips_a_url_clash(sync_env, prod_via, tmp_path):
    settings = prod_via(sync_env)
    sync_all(settings)
    make_dev_equal_prod(sync_env)
    with sync_env.dev() as dev:
        dev_pages = dev.execute("SELECT count(*) FROM web_pages").fetchone()[0]
    new_ids = add_pages(sync_env, 4)
    with sync_env.prod() as prod:
        prod_pages = prod.execute("SELECT count(*) FROM web_pages").fetchone()[0]
    exports, streams = export_deltas(sync_env.dev_url, settings, tmp_path)
    assert [t for t, e in exports.items() if e.rows] == ["web_pages"]
    assert (exports["web_pages"].rows, exports["web_pages"].clashes) == (3, {CLASH_KEY: 1})
    streamed = streamed_rows(streams).get("web_pages", 0)
    assert 0 < streamed < prod_pages / 2, f"{streamed} of prod's {prod_pages} page keys streamed for 4 new pages"
    outcome = sync_all(settings)["web_pages"]
    assert outcome.export.rows == 3
    assert outcome.export.already_in_prod == dev_pages
    assert outcome.result.inserted == 3
    assert outcome.result.skipped == {CLASH_KEY: 1}
    with sync_env.prod() as prod:
        landed = {str(r[0]) for r in prod.execute("SELECT id FROM web_pages WHERE id = ANY(%s::uuid[])", [new_ids])}
    assert landed == set(new_ids[:3]), "the 3 new pages land, the one whose url prod holds does not"


# --- property: the delta equals its definition, for any dev and prod sets --------------------------------

_ids = st.text(alphabet="0123abc", min_size=1, max_size=4)
_urls = st.one_of(st.none(), st.sampled_from([f"u{i}" for i in range(12)]))
_rows = st.dictionaries(_ids, _urls, max_size=40)


def _unique_urls(rows: dict[str, str | None]) -> dict[str, str | None]:
    seen: set[str] = set()
    kept = {}
    for i, url in rows.items():
        if url is None or url not in seen:
            kept[i] = url
            seen.add(url or "")
    return kept


def _pair(servers) -> tuple[str, str]:
    n = f"kd_{os.getpid()}_{next(_databases)}"
    urls = []
    for server in (servers.dev, servers.prod):
        server.create_database(n)
        url = server.url(n)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kv (id text PRIMARY KEY, url text UNIQUE, body text)")
        urls.append(url)
    return urls[0], urls[1]


def _fill(url: str, rows: dict[str, str | None]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE kv")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO kv VALUES (%s, %s, %s)", [(i, u, f"body {i}") for i, u in rows.items()])


def test_the_delta_is_exactly_the_dev_rows_prod_lacks_on_every_key(servers, tmp_path):
    dev_url, prod_url = _pair(servers)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(dev=_rows, prod=_rows, shared=_rows, limit=st.sampled_from([0, 1, 3, 5000]))
    def check(dev: dict, prod: dict, shared: dict, limit: int) -> None:
        prod = _unique_urls({**prod, **shared})
        dev = _unique_urls({**dev, **{i: prod[i] for i in shared if i in prod}})
        _fill(dev_url, dev)
        _fill(prod_url, prod)
        export = export_deltas(dev_url, prod_url, tmp_path, ["kv"], candidate_limit=limit)[0]["kv"]
        prod_urls = {u for u in prod.values() if u is not None}
        missing = {i for i in dev if i not in prod}
        expected = {i for i in missing if dev[i] not in prod_urls}
        with open(export.path, encoding="utf-8", newline="") as f:
            shipped = {row["id"] for row in csv.DictReader(f)}
        assert shipped == expected
        assert export.already_in_prod == len(dev) - len(missing)
        assert export.clashes == ({"kv_url_key": len(missing - expected)} if missing - expected else {})
        assert export.dev_rows == len(dev)

    check()


def test_a_dev_value_longer_than_prods_column_is_not_taken_for_a_clash(servers, tmp_path):
    """A key column whose type differs between the sides ('abcd' cast to prod's varchar(3) is 'abc'): the clash
    is decided by dev's comparison of the values, as before; prod refuses the row at load instead."""
    n = f"kl_{os.getpid()}_{next(_databases)}"
    urls = []
    for server, width in ((servers.dev, 10), (servers.prod, 3)):
        server.create_database(n)
        urls.append(server.url(n))
        with psycopg.connect(urls[-1], autocommit=True) as conn:
            conn.execute(f"CREATE TABLE kv (id text PRIMARY KEY, code varchar({width}) UNIQUE)")
            conn.execute("INSERT INTO kv SELECT 'same' || g, 'c' || g FROM generate_series(1, 50) AS g")
            conn.execute("INSERT INTO kv VALUES ('p', 'abc')" if width == 3 else "INSERT INTO kv VALUES ('d', 'abcd')")
    export = export_deltas(urls[0], urls[1], tmp_path, ["kv"])[0]["kv"]
    assert (export.rows, export.clashes) == (1, {})
