"""Dev versus prod, per table: counts, rows missing in prod, rows only in prod, rows changed.

Checksum bisection, as data-diff tools do: each database hashes its own rows (over the columns both
sides ship, overrides left out) and returns, per range of ids (``id::text`` prefixes), a row count and
the XOR of the row hashes. Only ranges whose figures differ are split further; ids and hashes travel
only for small differing ranges.

With a ``DiffCache`` (``diff_cache.py``), a side does not hash its rows again where nothing changed:
it first reads each top bucket's version signature (count and XOR of a hash of ``(id, xmin)``: the main
heap only, no TOAST), and hashes whole rows only in buckets whose signature differs from the saved one.
A tick with nothing changed then reads the heaps and none of the large texts: one query per side.

The result is a ``TableDiff`` (table_diff.py); for a table opted in to newer-wins updates, version_split.py tells
apart the changed rows whose version alone differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg import sql

from websync_dagster.engine.diff_cache import BucketOutcome, BucketState, DiffCache
from websync_dagster.engine.key_digest import within_buckets
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.table_diff import TableDiff
from websync_dagster.transport.base import Query, Results, Statement, Step

#: a range with at most this many rows on each side is compared id by id
LEAF_ROWS = 256
#: length of the id prefixes of the first level, which is also the level the cache keeps (256 uuid buckets)
TOP_DEPTH = 2
#: settings that make every database print values the same way before they are hashed
_SAME_TEXT = sql.SQL(
    "SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true), "
    "set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true), "
    "set_config('bytea_output', 'hex', true)"
)


class TransactionSession(Protocol):
    def run_transaction(self, steps: Sequence[Step]) -> Results: ...


def hashed_columns(plan: TablePlan) -> list[str]:
    """Columns compared: shipped by the sync, minus those a sync overrides on purpose."""
    return [c for c in plan.shipped if c not in plan.overrides]


def _row_hash(key: str, columns: Sequence[str]) -> sql.Composed:
    values = sql.SQL(", ").join(sql.Identifier("t", c) for c in columns)
    return sql.SQL("('x' || left(md5(ROW({}, {})::text), 16))::bit(64)::bigint").format(
        sql.Identifier("t", key), values)


def _version_hash(key: str) -> sql.Composed:
    """A hash of (id, xmin): a new one for every new row version, read from the heap without de-TOASTing."""
    return sql.SQL("hashtextextended({}::text || '/' || t.xmin::text, 0)").format(sql.Identifier("t", key))


def _run(session: TransactionSession, **queries: sql.Composable) -> Results:
    """The named queries in one transaction (one snapshot), values printed the same way on both sides."""
    return session.run_transaction([Statement(_SAME_TEXT), *(Query(name, q) for name, q in queries.items())])


def _bucket_figures(
    session: TransactionSession, table: str, key: str, columns: Sequence[str], depth: int,
    prefixes: Sequence[str] = (), length: int = 0,
) -> dict[str, BucketState]:
    """Per bucket (``id::text`` cut to ``depth``): count, XOR of the version hashes, XOR of the row hashes."""
    query = sql.SQL(
        "SELECT left({k}::text, {d}) AS b, count(*) AS n, bit_xor({v}) AS v, bit_xor({h}) AS x "
        "FROM {t} AS t WHERE {where} GROUP BY 1"
    ).format(k=sql.Identifier("t", key), d=sql.Literal(depth), v=_version_hash(key), h=_row_hash(key, columns),
             t=sql.Identifier(table), where=within_buckets(key, prefixes, length))
    return {r["b"]: BucketState(r["n"], r["v"], r["x"]) for r in _run(session, buckets=query).rows("buckets")}


def _identity_query(table: str, key: str, columns: Sequence[str]) -> sql.Composed:
    """What a cache file must match: cluster, server version, database, table oid, compared columns' types."""
    return sql.SQL(
        "SELECT s.system_identifier::text AS system, current_setting('server_version_num') AS server_version, "
        "current_database() AS database, c.oid::bigint AS oid, "
        "(SELECT json_object_agg(a.attname, format_type(a.atttypid, a.atttypmod)) FROM pg_attribute AS a "
        " WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY({names})) AS types "
        "FROM pg_control_system() AS s, pg_class AS c WHERE c.oid = format('%I', {table})::regclass"
    ).format(names=sql.Literal([key, *columns]), table=sql.Literal(table))


def _signature_query(table: str, key: str) -> sql.Composed:
    query = "SELECT left({k}::text, {d}) AS b, count(*) AS n, bit_xor({v}) AS v FROM {t} AS t GROUP BY 1"
    return sql.SQL(query).format(
        k=sql.Identifier("t", key), d=sql.Literal(TOP_DEPTH), v=_version_hash(key), t=sql.Identifier(table))


@dataclass(frozen=True)
class _TopLevel:
    """One side's figures at TOP_DEPTH, what reading them cost, and the identity its cache file is kept under."""

    buckets: dict[str, BucketState]
    queries: int
    rehashed: int
    identity: dict[str, Any] | None = None


def _top_level(session: TransactionSession, plan: TablePlan, columns: Sequence[str], cache: DiffCache | None
               ) -> _TopLevel:
    """Without a cache, every row hashed. With one: the signatures first, then whole rows only in buckets whose
    signature is not the saved one; the cache is then updated (each bucket's figures from one snapshot)."""
    table, key = plan.table, plan.key
    if cache is None:
        buckets = _bucket_figures(session, table, key, columns, TOP_DEPTH)
        return _TopLevel(buckets, 1, len(buckets))
    results = _run(session, identity=_identity_query(table, key, columns), signature=_signature_query(table, key))
    (found,), signature_rows = results.rows("identity"), results.rows("signature")
    identity = {**found, "table": table, "key": key, "columns": list(columns), "depth": TOP_DEPTH}
    signatures = {r["b"]: (r["n"], r["v"]) for r in signature_rows}
    saved = cache.load(identity) or {}
    stale = [b for b, sig in signatures.items() if b not in saved or saved[b].signature != sig]
    if stale and len(stale) == len(signatures):
        buckets = _bucket_figures(session, table, key, columns, TOP_DEPTH)
    else:
        buckets = {b: saved[b] for b in signatures if b not in stale}
        if stale:
            buckets |= _bucket_figures(session, table, key, columns, TOP_DEPTH, stale, TOP_DEPTH)
    cache.save(identity, buckets)
    return _TopLevel(buckets, 1 + bool(stale), len(stale), identity)


class _Tally:
    """What the bisection finds, per top bucket (so that a bucket's answer can be kept for the next tick)."""

    def __init__(self) -> None:
        self.found: dict[str, list[int]] = {}  # top bucket -> [missing, only in prod, changed]
        self.fetched = 0
        #: top buckets whose rows changed while they were bisected: their answer is not kept
        self.moved: set[str] = set()

    def add(self, bucket_or_id: str, kind: int, rows: int = 1) -> None:
        self.found.setdefault(bucket_or_id[:TOP_DEPTH], [0, 0, 0])[kind] += rows

    def total(self, kind: int) -> int:
        return sum(counts[kind] for counts in self.found.values())


_MISSING, _ONLY_PROD, _CHANGED = 0, 1, 2


def _split(dev_b: dict[str, BucketState], prod_b: dict[str, BucketState], tally: _Tally
           ) -> tuple[list[str], list[str]]:
    """Buckets whose figures differ: counted at once when one side is empty, else compared id by id (leaves)
    or split further (deeper)."""
    leaves, deeper = [], []
    for bucket in _differing(dev_b, prod_b):
        dev, prod = dev_b.get(bucket, _EMPTY), prod_b.get(bucket, _EMPTY)
        if prod.rows == 0:
            tally.add(bucket, _MISSING, dev.rows)
        elif dev.rows == 0:
            tally.add(bucket, _ONLY_PROD, prod.rows)
        elif max(dev.rows, prod.rows) <= LEAF_ROWS or len(bucket) >= 36:
            leaves.append(bucket)
        else:
            deeper.append(bucket)
    return leaves, deeper


_EMPTY = BucketState(0, 0, 0)


def _differing(dev_b: dict[str, BucketState], prod_b: dict[str, BucketState]) -> list[str]:
    return [b for b in sorted(set(dev_b) | set(prod_b))
            if (dev_b.get(b, _EMPTY).rows, dev_b.get(b, _EMPTY).xor) != (prod_b.get(b, _EMPTY).rows,
                                                                         prod_b.get(b, _EMPTY).xor)]


def _leaf_hashes(
    session: TransactionSession, table: str, key: str, columns: Sequence[str], prefixes: Sequence[str], depth: int
) -> dict[str, int]:
    query = sql.SQL("SELECT {k}::text AS id, {h} AS h FROM {t} AS t WHERE {where}").format(
        k=sql.Identifier("t", key), h=_row_hash(key, columns), t=sql.Identifier(table),
        where=within_buckets(key, prefixes, depth))
    return {r["id"]: r["h"] for r in _run(session, leaves=query).rows("leaves")}


def _moved(parents: dict[str, BucketState], children: Iterable[tuple[str, int, int]], length: int,
           buckets: Sequence[str]) -> set[str]:
    """Top buckets of those ``buckets`` whose children (name, rows, xor), read later, do not add up to the
    parent's figures: rows changed between the two reads."""
    sums: dict[str, tuple[int, int]] = {}
    for name, rows, xor in children:
        n, x = sums.get(name[:length], (0, 0))
        sums[name[:length]] = (n + rows, x ^ xor)
    return {b[:TOP_DEPTH] for b in buckets
            if sums.get(b, (0, 0)) != (parents.get(b, _EMPTY).rows, parents.get(b, _EMPTY).xor)}


def _compare_leaves(dev: TransactionSession, prod: TransactionSession, plan: TablePlan, columns: Sequence[str],
                    levels: tuple[dict[str, BucketState], dict[str, BucketState]], leaves: Sequence[str], depth: int,
                    tally: _Tally) -> None:
    dev_h = _leaf_hashes(dev, plan.table, plan.key, columns, leaves, depth)
    prod_h = _leaf_hashes(prod, plan.table, plan.key, columns, leaves, depth)
    tally.fetched += max(len(dev_h), len(prod_h))
    for parents, hashes in zip(levels, (dev_h, prod_h), strict=True):
        tally.moved |= _moved(parents, ((i, 1, h) for i, h in hashes.items()), depth, leaves)
    for i, h in dev_h.items():
        if i not in prod_h:
            tally.add(i, _MISSING)
        elif prod_h[i] != h:
            tally.add(i, _CHANGED)
    for i in prod_h.keys() - dev_h.keys():
        tally.add(i, _ONLY_PROD)


def _outcome(dev: BucketState, prod: BucketState, found: Sequence[int]) -> BucketOutcome:
    return BucketOutcome(dev.rows, dev.xor, prod.rows, prod.xor, *found)


def _reuse_outcomes(dev_b: dict[str, BucketState], prod_b: dict[str, BucketState],
                    known: dict[str, BucketOutcome], tally: _Tally) -> list[str]:
    """Count the differing top buckets whose figures are those of a kept outcome; return the others."""
    left = []
    for bucket in _differing(dev_b, prod_b):
        outcome = known.get(bucket)
        figures = _outcome(dev_b.get(bucket, _EMPTY), prod_b.get(bucket, _EMPTY), (0, 0, 0)).figures
        if outcome is not None and outcome.figures == figures:
            tally.found[bucket] = [outcome.missing, outcome.only_prod, outcome.changed]
        else:
            left.append(bucket)
    return left


def _keep_outcomes(cache: DiffCache | None, dev_top: _TopLevel, prod_top: _TopLevel, tally: _Tally) -> None:
    if cache is None or dev_top.identity is None or prod_top.identity is None:
        return
    outcomes = {b: _outcome(dev_top.buckets.get(b, _EMPTY), prod_top.buckets.get(b, _EMPTY), tally.found[b])
                for b in _differing(dev_top.buckets, prod_top.buckets) if b in tally.found and b not in tally.moved}
    cache.save_outcomes(dev_top.identity, prod_top.identity, outcomes)


def diff_table(
    dev: TransactionSession, prod: TransactionSession, plan: TablePlan, cache: DiffCache | None = None
) -> TableDiff:
    """Compare one table by checksum bisection over id prefixes. With ``cache``, unchanged buckets are not
    hashed again, and buckets whose difference was bisected before with the same figures are not again."""
    table, key, columns = plan.table, plan.key, hashed_columns(plan)
    dev_top, prod_top = _top_level(dev, plan, columns, cache), _top_level(prod, plan, columns, cache)
    tally, queries, depth = _Tally(), max(dev_top.queries, prod_top.queries), TOP_DEPTH
    known = (cache.load_outcomes(dev_top.identity, prod_top.identity)
             if cache is not None and dev_top.identity is not None and prod_top.identity is not None else {})
    left = set(_reuse_outcomes(dev_top.buckets, prod_top.buckets, known, tally))
    dev_b = {b: s for b, s in dev_top.buckets.items() if b in left}
    prod_b = {b: s for b, s in prod_top.buckets.items() if b in left}
    while True:
        leaves, deeper = _split(dev_b, prod_b, tally)
        if leaves:
            _compare_leaves(dev, prod, plan, columns, (dev_b, prod_b), leaves, depth, tally)
            queries += 1
        if not deeper:
            break
        dev_c = _bucket_figures(dev, table, key, columns, depth + 1, deeper, depth)
        prod_c = _bucket_figures(prod, table, key, columns, depth + 1, deeper, depth)
        for parents, children in ((dev_b, dev_c), (prod_b, prod_c)):
            tally.moved |= _moved(parents, ((b, c.rows, c.xor) for b, c in children.items()), depth, deeper)
        dev_b, prod_b, depth, queries = dev_c, prod_c, depth + 1, queries + 1
    _keep_outcomes(cache, dev_top, prod_top, tally)
    return TableDiff(table, sum(b.rows for b in dev_top.buckets.values()),
                     sum(b.rows for b in prod_top.buckets.values()), tally.total(_MISSING), tally.total(_ONLY_PROD),
                     tally.total(_CHANGED), queries, tally.fetched, dev_top.rehashed + prod_top.rehashed)
