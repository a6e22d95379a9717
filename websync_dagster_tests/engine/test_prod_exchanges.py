"""How many exchanges with prod a sync makes (each one a round trip of the VPS link, 40 ms and more): a table
with nothing to ship costs none but the COPY of its differing buckets' ids (its rows before and after are the
count its id digests gave). Counted on the real prod session of a real sync (each call of the session is one
exchange)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg import sql

from websync_dagster.transport.direct import PsycopgSession
from websync_dagster_tests.engine.test_key_digest import CLASH_KEY, TABLES, add_pages, make_dev_equal_prod
from websync_dagster_tests.helpers import sync_all


@pytest.fixture
def exchanges(sync_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The calls made on prod's session from now on, each as 'method: the start of its SQL'."""
    prod_info = sync_env.prod().info
    target = (prod_info.host, prod_info.port, prod_info.dbname)
    seen: list[str] = []

    def counted(name: str):
        real = getattr(PsycopgSession, name)

        def call(self, arg, *rest, **kw):
            info = self.conn.info
            if (info.host, info.port, info.dbname) == target:
                text = arg.as_string(self.conn) if isinstance(arg, sql.Composable) else repr(arg)
                seen.append(f"{name}: {text[:120]}")
            return real(self, arg, *rest, **kw)

        return call

    for name in ("query", "copy_out", "run_transaction"):
        monkeypatch.setattr(PsycopgSession, name, counted(name))
    yield seen


def _count(sync_env, table: str) -> int:
    with sync_env.prod() as prod:
        return prod.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def _ids_copies(exchanges: list[str]) -> list[str]:
    return [e for e in exchanges if e.startswith('copy_out: COPY (SELECT "t"."id" FROM ')]


def test_a_sync_with_nothing_new_asks_prod_for_the_catalog_the_digests_and_the_differing_ids(sync_env, exchanges):
    sync_all(sync_env.settings())
    make_dev_equal_prod(sync_env)  # every table keeps rows only prod holds: their buckets differ
    exchanges.clear()
    outcomes = sync_all(sync_env.settings())
    # the catalog, the id digests of every table, and each table's ids of its differing buckets: no count
    assert 3 <= len(_ids_copies(exchanges)) <= len(TABLES), "\n".join(exchanges)
    assert len(exchanges) == 2 + len(_ids_copies(exchanges)), "\n".join(exchanges)
    for table in TABLES:
        result = outcomes[table].result
        assert (result.inserted, result.commits) == (0, 0), table
        assert result.before == result.after == _count(sync_env, table), table  # prod's rows, though not counted apart


def test_a_small_delta_asks_prod_nothing_more_of_the_tables_with_nothing_to_ship(sync_env, exchanges):
    sync_all(sync_env.settings())
    make_dev_equal_prod(sync_env)
    new_ids = add_pages(sync_env, 4)
    before = _count(sync_env, "web_pages")
    exchanges.clear()
    outcomes = sync_all(sync_env.settings())
    # the catalog, the digests, each table's differing ids, then web_pages's clash keys (prod holds one new url
    # under another id) and its one commit unit
    assert len(exchanges) == 2 + len(_ids_copies(exchanges)) + 2, "\n".join(exchanges)
    assert not [e for e in exchanges if "SELECT count(*) AS n FROM" in e and "pg_advisory" not in e], exchanges
    pages = outcomes["web_pages"].result
    assert (pages.inserted, pages.skipped, pages.before, pages.after) == (3, {CLASH_KEY: 1}, before, before + 3)
    for table in ("web_sources", "knowledge_base", "web_files"):
        result = outcomes[table].result
        assert result.before == result.after == _count(sync_env, table), table
    with sync_env.prod() as prod:
        landed = {str(r[0]) for r in prod.execute("SELECT id FROM web_pages WHERE id = ANY(%s::uuid[])", [new_ids])}
    assert landed == set(new_ids[:3])
