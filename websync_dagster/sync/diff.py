"""Dev versus prod, per table: counts, rows missing in prod, rows only in prod, rows changed.

Checksum bisection, as data-diff tools do: each database hashes its own rows (over the columns both
sides ship, overrides left out) and returns, per range of ids (``id::text`` prefixes), a row count and
the XOR of the row hashes. Only ranges whose figures differ are split further; ids and hashes travel
only for small differing ranges. Two identical tables cost one query per side and 16 rows back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from psycopg import sql

from websync_dagster.sync.plan import TablePlan
from websync_dagster.transport.base import Query, Statement, Step

#: a range with at most this many rows on each side is compared id by id
LEAF_ROWS = 256
#: settings that make every database print values the same way before they are hashed
_SAME_TEXT = sql.SQL(
    "SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true), "
    "set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true), "
    "set_config('bytea_output', 'hex', true)"
)


class TransactionSession(Protocol):
    def run_transaction(self, steps: Sequence[Step]) -> list[list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class TableDiff:
    table: str
    dev_rows: int
    prod_rows: int
    missing_in_prod: int
    only_in_prod: int
    changed: int
    queries: int = 0  # per side
    ids_compared: int = 0  # (id, hash) pairs fetched from each side, at most

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.table}: {self.missing_in_prod} missing in prod, {self.only_in_prod} only in prod, "
                f"{self.changed} changed")

    @property
    def in_sync(self) -> bool:
        return not (self.missing_in_prod or self.only_in_prod or self.changed)


def hashed_columns(plan: TablePlan) -> list[str]:
    """Columns compared: shipped by the sync, minus those a sync overrides on purpose."""
    return [c for c in plan.shipped if c not in plan.overrides]


def _row_hash(key: str, columns: Sequence[str]) -> sql.Composed:
    values = sql.SQL(", ").join(sql.Identifier("t", c) for c in columns)
    return sql.SQL("('x' || left(md5(ROW({}, {})::text), 16))::bit(64)::bigint").format(
        sql.Identifier("t", key), values)


def _in_ranges(key: str, prefixes: Sequence[str], depth: int) -> sql.Composable:
    if not prefixes:
        return sql.SQL("true")
    return sql.SQL("left({}::text, {}) = ANY({})").format(
        sql.Identifier("t", key), sql.Literal(depth - 1), sql.Literal(list(prefixes)))


def _run(session: TransactionSession, query: sql.Composable) -> list[dict[str, Any]]:
    return session.run_transaction([Statement(_SAME_TEXT), Query(query)])[0]


def _bucket_figures(
    session: TransactionSession, table: str, key: str, columns: Sequence[str], prefixes: Sequence[str], depth: int
) -> dict[str, tuple[int, int]]:
    query = sql.SQL(
        "SELECT left({k}::text, {d}) AS b, count(*) AS n, bit_xor({h}) AS x FROM {t} AS t WHERE {where} GROUP BY 1"
    ).format(k=sql.Identifier("t", key), d=sql.Literal(depth), h=_row_hash(key, columns),
             t=sql.Identifier(table), where=_in_ranges(key, prefixes, depth))
    return {r["b"]: (r["n"], r["x"]) for r in _run(session, query)}


def _leaf_hashes(
    session: TransactionSession, table: str, key: str, columns: Sequence[str], prefixes: Sequence[str], depth: int
) -> dict[str, int]:
    query = sql.SQL("SELECT {k}::text AS id, {h} AS h FROM {t} AS t WHERE left({k}::text, {d}) = ANY({p})").format(
        k=sql.Identifier("t", key), h=_row_hash(key, columns), t=sql.Identifier(table), d=sql.Literal(depth),
        p=sql.Literal(list(prefixes)))
    return {r["id"]: r["h"] for r in _run(session, query)}


def diff_table(dev: TransactionSession, prod: TransactionSession, plan: TablePlan) -> TableDiff:
    """Compare one table by checksum bisection over id prefixes."""
    table, key, columns = plan.table, plan.key, hashed_columns(plan)
    missing = only_prod = changed = dev_rows = prod_rows = queries = fetched = 0
    prefixes: list[str] = []
    depth = 1
    while True:
        dev_b = _bucket_figures(dev, table, key, columns, prefixes, depth)
        prod_b = _bucket_figures(prod, table, key, columns, prefixes, depth)
        queries += 1
        if depth == 1:
            dev_rows = sum(n for n, _ in dev_b.values())
            prod_rows = sum(n for n, _ in prod_b.values())
        leaves, deeper = [], []
        for bucket in sorted(set(dev_b) | set(prod_b)):
            (dev_n, dev_x), (prod_n, prod_x) = dev_b.get(bucket, (0, 0)), prod_b.get(bucket, (0, 0))
            if (dev_n, dev_x) == (prod_n, prod_x):
                continue
            if prod_n == 0:
                missing += dev_n
            elif dev_n == 0:
                only_prod += prod_n
            elif max(dev_n, prod_n) <= LEAF_ROWS or len(bucket) >= 36:
                leaves.append(bucket)
            else:
                deeper.append(bucket)
        if leaves:
            dev_h = _leaf_hashes(dev, table, key, columns, leaves, depth)
            prod_h = _leaf_hashes(prod, table, key, columns, leaves, depth)
            queries += 1
            fetched += max(len(dev_h), len(prod_h))
            missing += sum(1 for i in dev_h if i not in prod_h)
            only_prod += sum(1 for i in prod_h if i not in dev_h)
            changed += sum(1 for i, h in dev_h.items() if i in prod_h and prod_h[i] != h)
        if not deeper:
            break
        prefixes, depth = deeper, depth + 1
    return TableDiff(table, dev_rows, prod_rows, missing, only_prod, changed, queries, fetched)
