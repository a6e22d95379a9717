"""The cases of ``benchmarks/peers.py``: what each one changes in dev (once) and in each prod (before each tool's run).

In order: full sync (empty prod), no-op re-run, 1% new rows (current timestamps), the insert-only cases (a) a
prod-only row, (b) a prod row holding a new dev row's id with other content, then 1% new rows with OLD timestamps
(older than anything prod has), and last (c) a prod page holding a new dev page's url under another id. The
insert-only cases each add a few new dev rows (current timestamps) so that something ships.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import sql

from benchmarks.dataset import Scale, generate
from benchmarks.peers_check import TABLES
from websync_dagster.demo import sample_data

OLD = sample_data.NOW - timedelta(days=30)  # older than every row the benchmark's data has


def dev_ids(dev_url: str) -> dict[str, set]:
    with psycopg.connect(dev_url) as conn:
        return {t: {r[0] for r in conn.execute(sql.SQL("SELECT id FROM {}").format(sql.Identifier(t)))} for t in TABLES}


def add_dev_rows(dev_url: str, factor: float, first: int, when: str) -> dict[str, list]:
    """New dev rows (``generate`` at ``factor``, ids and urls from ``first``) with created_at / updated_at set to
    now() or to ``OLD``; returns the new ids per table."""
    before = dev_ids(dev_url)
    with psycopg.connect(dev_url) as conn:
        generate(conn, Scale().times(factor), first=first)
    new = {t: sorted(ids - before[t]) for t, ids in dev_ids(dev_url).items()}
    with psycopg.connect(dev_url) as conn:
        conn.execute("SET session_replication_role = replica")  # the updated_at triggers would say now()
        stamp = sql.SQL("now()") if when == "now" else sql.Literal(OLD)
        for table, ids in new.items():
            if ids:
                conn.execute(sql.SQL("UPDATE {} SET created_at = {}, updated_at = {} WHERE id = ANY(%s)").format(
                    sql.Identifier(table), stamp, stamp), [ids])
    return new


def page_without_files(dev_url: str, page_ids: list, skip: int = 0):
    with psycopg.connect(dev_url) as conn:
        return conn.execute("SELECT p.id FROM web_pages AS p WHERE p.id = ANY(%s) AND NOT EXISTS "
                            "(SELECT 1 FROM web_files AS f WHERE f.web_page_id = p.id) "
                            "ORDER BY p.url OFFSET %s LIMIT 1", [page_ids, skip]).fetchone()[0]


def put_prod_row(src_url: str, prod_url: str, cols: list[str], page_id, changes: dict[str, str]) -> None:
    """Insert into prod's web_pages a copy of web_pages row ``page_id`` of ``src_url`` (dev or prod itself), with
    ``changes`` (column -> SQL expression); a NOT NULL column of prod's without default that is not shipped (a
    tool's own, e.g. dlt's ``_dlt_id``) gets a placeholder."""
    names = sql.SQL(", ").join(map(sql.Identifier, cols))
    with psycopg.connect(src_url) as src, psycopg.connect(prod_url) as prod:
        prod.execute(sql.SQL("CREATE TEMP TABLE peers_row AS SELECT {} FROM web_pages WITH NO DATA").format(names))
        with src.cursor().copy(sql.SQL("COPY (SELECT {} FROM web_pages WHERE id = %s) TO STDOUT").format(names),
                               [page_id]) as out, prod.cursor().copy("COPY peers_row FROM STDIN") as into:
            for chunk in out:
                into.write(chunk)
        prod.execute(sql.SQL("UPDATE peers_row SET {}").format(sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.SQL(e)) for c, e in changes.items())))
        extra = [r[0] for r in prod.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'web_pages'::regclass AND attnum > 0 "
            "AND NOT attisdropped AND attnotnull AND NOT atthasdef") if r[0] not in cols]
        prod.execute(sql.SQL("INSERT INTO web_pages ({}) SELECT {} FROM peers_row").format(
            sql.SQL(", ").join(map(sql.Identifier, [*cols, *extra])),
            sql.SQL(", ").join([*map(sql.Identifier, cols), *[sql.SQL("'peers-' || gen_random_uuid()")] * len(extra)])))


@dataclass
class Case:
    name: str
    label: str
    dev_change: Callable[[], dict] = lambda: {}
    #: (prod_url, what dev_change returned) -> None: the prod side of the case, before each tool's run
    prod_change: Callable[[str, dict], None] | None = None


def cases(dev_url: str, factor: float, columns: dict[str, list[str]]) -> list[Case]:
    pages = columns["web_pages"]
    few = 0.0005  # 1 document, 10 pages, 1 file

    def prod_only(prod_url: str, _new: dict) -> None:
        with psycopg.connect(prod_url) as conn:
            any_page = conn.execute("SELECT id FROM web_pages ORDER BY id LIMIT 1").fetchone()[0]
        put_prod_row(prod_url, prod_url, pages, any_page, {
            "id": "gen_random_uuid()", "url": "'https://prod-only.example.tn/' || id", "url_hash": "md5(id::text)",
            "title": "'a page only prod has'", "knowledge_base_id": "NULL"})

    def same_id(prod_url: str, new: dict) -> None:
        put_prod_row(dev_url, prod_url, pages, new["same_id"], {
            "title": "'prod''s own version: ' || title", "knowledge_base_id": "NULL"})

    def other_id(prod_url: str, new: dict) -> None:
        put_prod_row(dev_url, prod_url, pages, new["same_url"], {
            "id": "gen_random_uuid()", "title": "'prod''s page at that url'", "knowledge_base_id": "NULL"})

    def batch(first: int, tag: str = "", when: str = "now", part: float = few) -> Callable[[], dict]:
        def change() -> dict:
            new = add_dev_rows(dev_url, part, first, when)
            if tag:
                new[tag] = page_without_files(dev_url, new["web_pages"])
            return new
        return change

    return [
        Case("full", "full sync, empty prod"),
        Case("rerun", "no-op re-run"),
        Case("new_1pct", "1% new rows", batch(10_000_000, part=max(factor * 0.01, few))),
        Case("a_prod_only", "(a) prod-only row kept", batch(20_000_000), prod_only),
        Case("b_same_id", "(b) prod row on a dev id", batch(30_000_000, "same_id"), same_id),
        Case("old_1pct", "1% new, OLD timestamps", batch(40_000_000, when="old", part=max(factor * 0.01, few))),
        # last: dlt fails it, and a failed load package is retried (and fails) first in every later dlt run
        Case("c_other_id", "(c) other id on a dev url", batch(50_000_000, "same_url"), other_id),
    ]
