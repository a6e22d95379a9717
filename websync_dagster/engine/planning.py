"""Reading both catalogs and planning every synced table, each on its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from websync_dagster.core.errors import TableSyncError
from websync_dagster.engine.catalog import QuerySession, TableInfo, UniqueKey, read_catalog
from websync_dagster.engine.export import ProdKeys
from websync_dagster.engine.key_digest import DIGEST_DEPTH, Digests, ProdIdDigests, within_buckets
from websync_dagster.engine.order import fk_order
from websync_dagster.engine.plan import DEFAULT_OVERRIDES, TablePlan, plan_table
from websync_dagster.transport.base import ProdSession


@dataclass(frozen=True)
class Planning:
    """Each table's plan or the one error that stops it: a table's problem is that table's alone."""

    plans: dict[str, TablePlan]  # in foreign-key order
    errors: dict[str, TableSyncError]
    prod_catalog: dict[str, TableInfo]  # every table prod could describe, planned or not
    #: prod's id digests of every planned table, read once for all of them on first use (key_digest.py)
    prod_digests: ProdIdDigests

    def plan(self, table: str) -> TablePlan:
        """The table's plan, or its planning error raised."""
        if table in self.errors:
            raise self.errors[table]
        return self.plans[table]

    def every_plan(self) -> dict[str, TablePlan]:
        """Every table's plan, in foreign-key order; the first table that could not be planned raises."""
        for error in self.errors.values():
            raise error
        return self.plans


def plan_each_table(
    dev: QuerySession,
    prod: QuerySession,
    tables: Sequence[str],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Planning:
    """Plans for ``tables`` in foreign-key order (computed from every table prod could describe); a
    table missing on one side, or that ``plan_table`` refuses, gets its error instead of a plan."""
    overrides = DEFAULT_OVERRIDES if overrides is None else overrides
    dev_catalog = read_catalog(dev, list(tables), side="dev", require_all=False)
    prod_catalog = read_catalog(prod, list(tables), side="prod", require_all=False)
    plans: dict[str, TablePlan] = {}
    errors: dict[str, TableSyncError] = {}
    for table in [*fk_order(prod_catalog), *(t for t in tables if t not in prod_catalog)]:
        try:
            for side, catalog in (("dev", dev_catalog), ("prod", prod_catalog)):
                if table not in catalog:
                    raise TableSyncError(table, f"table not found in the {side} database")
            plans[table] = plan_table(dev_catalog[table], prod_catalog[table], overrides.get(table))
        except TableSyncError as exc:
            errors[table] = exc
    return Planning(plans, errors, prod_catalog, ProdIdDigests({t: p.key for t, p in plans.items()}))


def plan_tables(
    dev: QuerySession,
    prod: QuerySession,
    tables: Sequence[str],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, TablePlan]:
    """Plans for ``tables`` in foreign-key order; the first table that cannot be planned raises."""
    return plan_each_table(dev, prod, tables, overrides).every_plan()


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
