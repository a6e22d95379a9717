"""What dev ships of a table: the rows prod lacks on every unique key it has.

Prod's side is read here (``prod_keys``: its unique keys, and ``ProdKeyReader``: their values as COPY
streams, its id digests); dev's side too: the digests of dev's ids say which buckets differ, prod's keys
of those buckets go into a dev temp table, and ``delta_filter`` is the condition that selects the rows
prod lacks, with the counts of those left out. Writing the file is engine/export.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import psycopg
from psycopg import sql

from websync_dagster.engine.catalog import UniqueKey
from websync_dagster.engine.key_digest import (
    DIGEST_DEPTH,
    BucketDigest,
    Digests,
    ProdIdDigests,
    differing_buckets,
    digest_query,
    within_buckets,
)
from websync_dagster.engine.plan import TablePlan
from websync_dagster.transport.base import ProdSession


class KeyReader(Protocol):
    """Reads one table's key values from prod (``ProdKeyReader``): each call one COPY stream."""

    def digests(self) -> Digests: ...

    def ids(self, buckets: Sequence[str]) -> Iterable[bytes]: ...

    def holding(self, values: Mapping[UniqueKey, Sequence[Sequence[str]]]) -> Iterable[bytes]: ...

    def everything(self) -> Iterable[bytes]: ...


@dataclass(frozen=True)
class ProdKeys:
    """Prod's unique keys of one table (primary first), the columns they are made of, and how to read
    their values from prod."""

    keys: tuple[UniqueKey, ...]
    columns: tuple[str, ...]
    reader: KeyReader
    #: more dev rows missing by id than this (or than prod has rows): their other unique keys are checked
    #: against every prod row's values, streamed, rather than their own values sent up to prod
    candidate_limit: int = 5000


def prod_keys(session: ProdSession, plan: TablePlan, digests: ProdIdDigests | None = None) -> ProdKeys:
    """Prod's primary key first, then each other unique key made only of shipped columns, and how to read
    their values from prod (see ``ProdKeyReader``). ``digests``: the planning's (None: read for this table)."""
    keys = tuple(sorted(
        (k for k in plan.prod.unique_keys if set(k.columns) <= set(plan.shipped)), key=lambda k: not k.primary
    ))
    columns = tuple(dict.fromkeys(c for k in keys for c in k.columns))
    reader = ProdKeyReader(session, plan, columns, digests or ProdIdDigests({plan.table: plan.key}))
    if {m.column for m in plan.type_mismatches} & set(columns):  # dev's values may not even parse as prod's type
        return ProdKeys(keys, columns, reader, candidate_limit=0)
    return ProdKeys(keys, columns, reader)


class ProdKeyReader:
    """Reads one table's key values from prod, each a COPY stream (one round trip each)."""

    def __init__(self, session: ProdSession, plan: TablePlan, columns: Sequence[str], digests: ProdIdDigests) -> None:
        self.session = session
        self.plan = plan
        self.columns = tuple(columns)
        self._digests = digests

    def digests(self) -> Digests:
        """Prod's id digests per bucket (read once per planning, for every planned table at once)."""
        return self._digests.of(self.session, self.plan.table)

    def ids(self, buckets: Sequence[str]) -> Iterator[bytes]:
        """Prod's ids in ``buckets``."""
        return self._copy([self.plan.key], within_buckets(self.plan.key, buckets, DIGEST_DEPTH))

    def holding(self, values: Mapping[UniqueKey, Sequence[Sequence[str]]]) -> Iterator[bytes]:
        """Every key column of the prod rows holding one of ``values`` (per key, tuples of its columns' values
        as text, cast to prod's types) on that key: only those rows, found through prod's unique indexes. Dev
        then compares the values it gets as it always did: a row that matched only after the cast is no clash."""
        return self._copy(self.columns, sql.SQL(" OR ").join(self._holding(k, v) for k, v in values.items()))

    def everything(self) -> Iterator[bytes]:
        """Every key column of every prod row."""
        return self._copy(self.columns, sql.SQL("true"))

    def _holding(self, key: UniqueKey, values: Sequence[Sequence[str]]) -> sql.Composed:
        names = [sql.Identifier(f"v{i}") for i in range(len(key.columns))]
        arrays = [sql.SQL("{}::text[]").format(sql.Literal([v[i] for v in values])) for i in range(len(key.columns))]
        typed = [sql.SQL("v.{}::{}").format(n, sql.SQL(self.plan.prod.column(c).type))
                 for n, c in zip(names, key.columns, strict=True)]
        return sql.SQL("({}) IN (SELECT {} FROM unnest({}) AS v({}))").format(
            sql.SQL(", ").join(sql.Identifier("t", c) for c in key.columns), sql.SQL(", ").join(typed),
            sql.SQL(", ").join(arrays), sql.SQL(", ").join(names))

    def _copy(self, columns: Iterable[str], where: sql.Composable) -> Iterator[bytes]:
        return self.session.copy_out(sql.SQL("COPY (SELECT {} FROM {} AS t WHERE {}) TO STDOUT").format(
            sql.SQL(", ").join(sql.Identifier("t", c) for c in columns), sql.Identifier(self.plan.table), where))


_PROD_KEYS = sql.Identifier("_ws_prod_keys")


def _copy_into_keys(cur: psycopg.Cursor, columns: Sequence[str], chunks: Iterable[bytes]) -> None:
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
            _PROD_KEYS, sql.SQL(", ").join(map(sql.Identifier, columns)))) as copy:
        for chunk in chunks:
            copy.write(chunk)


def _missing_by_id(key: str) -> sql.Composed:
    return sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS p WHERE p.{k} = t.{k})").format(_PROD_KEYS, k=sql.Identifier(key))


def _candidate_values(cur: psycopg.Cursor, table: str, key: UniqueKey, candidates: sql.Composable
                      ) -> list[tuple[str, ...]]:
    """The distinct values (as text) of ``key`` in the candidate dev rows; NULLs never clash, so left out."""
    columns = [sql.Identifier("t", c) for c in key.columns]
    cur.execute(sql.SQL("SELECT DISTINCT {} FROM {} AS t WHERE {} AND {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(c) for c in columns), sql.Identifier(table), candidates,
        sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in columns)))
    return cur.fetchall()


def _load_prod_keys(cur: psycopg.Cursor, table: str, prod_keys: ProdKeys, buckets: Sequence[str] | None,
                    prod_rows: int) -> list[sql.Composed]:
    """Put into a dev temp table prod's ids of ``buckets`` and, for the dev rows of those buckets that prod
    lacks by id (the candidates), the prod rows holding one of their values of another unique key (every
    prod row's values when the candidates are many, or ``buckets`` is None); return, per key, the condition
    'this dev row clashes with prod on that key' (NULLs never clash, as in a unique index). Exact for the
    dev rows of ``buckets``."""
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        _PROD_KEYS, sql.SQL(", ").join(map(sql.Identifier, prod_keys.columns)), sql.Identifier(table)))
    if buckets is None:
        _copy_into_keys(cur, prod_keys.columns, prod_keys.reader.everything())
        _index_keys(cur, prod_keys.keys)
    else:
        _load_ids_and_clashing(cur, table, prod_keys, buckets, prod_rows)
    return [
        sql.SQL("EXISTS (SELECT 1 FROM {} AS p WHERE {})").format(_PROD_KEYS, sql.SQL(" AND ").join(
            sql.SQL("p.{c} = t.{c}").format(c=sql.Identifier(c)) for c in unique.columns))
        for unique in prod_keys.keys
    ]


def _index_keys(cur: psycopg.Cursor, keys: Sequence[UniqueKey]) -> None:
    """Index the key table on ``keys``, and analyze it. The planner expects few dev rows to be missing and
    then probes the key table once per row: an index keeps each probe cheap (a scan per row made the 1% run
    grow with rows x prod rows)."""
    for unique in keys:
        columns = sql.SQL(", ").join(map(sql.Identifier, unique.columns))
        cur.execute(sql.SQL("CREATE INDEX ON {} ({})").format(_PROD_KEYS, columns))
    cur.execute(sql.SQL("ANALYZE {}").format(_PROD_KEYS))


def _load_ids_and_clashing(cur: psycopg.Cursor, table: str, prod_keys: ProdKeys, buckets: Sequence[str],
                           prod_rows: int) -> None:
    primary, *others = prod_keys.keys
    (key,) = primary.columns
    _copy_into_keys(cur, [key], prod_keys.reader.ids(buckets))
    _index_keys(cur, [primary])  # before the candidates are looked for
    if not others:
        return
    candidates = sql.SQL("{} AND {}").format(within_buckets(key, buckets, DIGEST_DEPTH), _missing_by_id(key))
    cur.execute(sql.SQL("SELECT count(*) FROM {} AS t WHERE {}").format(sql.Identifier(table), candidates))
    n = cur.fetchone()[0]
    if n > min(prod_keys.candidate_limit, prod_rows):
        _copy_into_keys(cur, prod_keys.columns, prod_keys.reader.everything())
    elif n:
        values = {k: v for k in others if (v := _candidate_values(cur, table, k, candidates))}
        if values:
            _copy_into_keys(cur, prod_keys.columns, prod_keys.reader.holding(values))
    _index_keys(cur, others)


def _dev_digests(cur: psycopg.Cursor, table: str, key: str) -> Digests:
    cur.execute(digest_query(table, key))
    return {b: BucketDigest(n, x1, x2) for b, n, x1, x2 in cur.fetchall()}


@dataclass(frozen=True)
class Delta:
    """Which dev rows an export ships (``condition``), and the counts of the others."""


    condition: sql.Composable  # 'prod lacks this row on every unique key'
    dev_rows: int
    already: int  # dev rows prod has by id
    clashes: dict[str, int]  # dev rows left out per other unique key
    prod_rows: int | None  # from prod's digests, when read


def delta_filter(cur: psycopg.Cursor, table: str, prod_keys: ProdKeys) -> Delta:
    """Which dev rows prod lacks, and the counts of the others. Only the buckets of ids whose digests differ
    between dev and prod are looked at (in the others, prod has every dev id): when none differs, prod's keys
    are not read at all. Without prod's primary key among the keys, every prod row's keys are read."""
    primary = prod_keys.keys[0]
    if primary.primary:
        dev_digests = _dev_digests(cur, table, primary.columns[0])
        prod_digests = prod_keys.reader.digests()
        buckets: list[str] | None = differing_buckets(dev_digests, prod_digests)
        dev_rows = sum(d.rows for d in dev_digests.values())
        already = sum(d.rows for b, d in dev_digests.items() if b not in buckets)
        prod_rows: int | None = sum(d.rows for d in prod_digests.values())
        if not buckets:
            return Delta(sql.SQL("false"), dev_rows, already, {}, prod_rows)
        in_buckets = within_buckets(primary.columns[0], buckets, DIGEST_DEPTH)
    else:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        dev_rows, already, prod_rows, buckets, in_buckets = cur.fetchone()[0], 0, None, None, sql.SQL("true")
    conditions = _load_prod_keys(cur, table, prod_keys, buckets, prod_rows or 0)
    clashes = {}
    for i, key in enumerate(prod_keys.keys):
        earlier = [sql.SQL("NOT {}").format(c) for c in conditions[:i]]
        cur.execute(sql.SQL("SELECT count(*) FROM {} AS t WHERE {}").format(
            sql.Identifier(table), sql.SQL(" AND ").join([in_buckets, *earlier, conditions[i]])))
        n = cur.fetchone()[0]
        if key.primary:
            already += n
        elif n:
            clashes[key.name] = n
    condition = sql.SQL(" AND ").join([in_buckets, *(sql.SQL("NOT {}").format(c) for c in conditions)])
    return Delta(condition, dev_rows, already, clashes, prod_rows)
