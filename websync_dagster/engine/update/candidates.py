"""Which rows of a table opted in to newer-wins updates dev holds newer than prod: the update path's delta.

Both sides' per-bucket digests of (id, version) say which buckets differ (key_digest.py); only there are prod's
ids and versions read (one COPY of two narrow columns, no text column of prod's rows), into a dev temp table,
where dev's planner compares them with dev's rows. Versions are compared as numbers (a timestamp's epoch), the
same on both sides whatever each session's TimeZone.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from websync_dagster.engine.key_digest import DIGEST_DEPTH, BucketDigest, digest_query, read_digests, within_buckets
from websync_dagster.engine.plan import TablePlan
from websync_dagster.transport.base import ProdSession

_TIMES = ("timestamp with time zone", "timestamp without time zone", "date")
_VERSIONS = sql.Identifier("_ws_prod_versions")


def version_value(plan: TablePlan, alias: str = "t") -> sql.Composed:
    """The row's version as a number: the epoch of a timestamp or date, the value of a number."""
    assert plan.version is not None, "only a table opted in to newer-wins updates has a version"
    column = plan.prod.column(plan.version)
    v = sql.Identifier(alias, plan.version)
    if (column.base_type or column.type) in _TIMES:
        return sql.SQL("extract(epoch from {})").format(v)
    return sql.SQL("{}::numeric").format(v)


@dataclass(frozen=True)
class Newer:
    """What the versions say of the rows both sides hold by id."""

    #: ids (as text, in order) of the rows dev holds with a newer version than prod's: to update
    ids: list[str]
    #: ids (as text, in order) of the rows prod holds with a newer version than dev's: never touched
    prod_ids: list[str]
    #: buckets of ids whose (id, version) digests differ, of those both sides hold
    buckets: int

    @property
    def prod_newer(self) -> int:
        """How many rows prod holds newer (kept as they are by the update path)."""
        return len(self.prod_ids)


def find_newer(dev: psycopg.Connection, prod: ProdSession, plan: TablePlan) -> Newer:
    """The rows to update (dev newer), and those prod holds newer; a NULL version is never newer."""
    table, key = plan.table, plan.key
    value = version_value(plan)
    prod_digests = read_digests(prod, table, key, value)
    with dev.transaction(), dev.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute(digest_query(table, key, value))
        dev_digests = {b: BucketDigest(n, x1, x2) for b, n, x1, x2 in cur.fetchall()}
        buckets = sorted(b for b, d in dev_digests.items() if b in prod_digests and prod_digests[b] != d)
        if not buckets:
            return Newer([], [], 0)
        in_buckets = within_buckets(key, buckets, DIGEST_DEPTH)
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT t.{} AS id, 0::numeric AS v FROM {} AS t "
                            "WITH NO DATA").format(_VERSIONS, sql.Identifier(key), sql.Identifier(table)))
        with cur.copy(sql.SQL("COPY {} (id, v) FROM STDIN").format(_VERSIONS)) as copy:
            for chunk in prod.copy_out(sql.SQL("COPY (SELECT t.{}, {} FROM {} AS t WHERE {}) TO STDOUT").format(
                    sql.Identifier(key), value, sql.Identifier(table), in_buckets)):
                copy.write(chunk)
        cur.execute(sql.SQL(
            "SELECT t.{k}::text AS id, {v} > p.v AS dev_newer FROM {t} AS t JOIN {versions} AS p ON p.id = t.{k} "
            "WHERE {v} IS DISTINCT FROM p.v AND {v} IS NOT NULL AND p.v IS NOT NULL ORDER BY 1"
        ).format(k=sql.Identifier(key), v=value, t=sql.Identifier(table), versions=_VERSIONS))
        rows = cur.fetchall()
    return Newer([i for i, newer in rows if newer], [i for i, newer in rows if not newer], len(buckets))
