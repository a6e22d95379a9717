"""Reading both catalogs and planning every synced table, each on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websync_dagster.core.errors import TableSyncError
from websync_dagster.engine.catalog import QuerySession, TableInfo, read_catalog
from websync_dagster.engine.key_digest import ProdIdDigests
from websync_dagster.engine.order import fk_order
from websync_dagster.engine.plan import DEFAULT_OVERRIDES, TablePlan, plan_table


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
    versions: Mapping[str, str] | None = None,
) -> Planning:
    """Plans for ``tables`` in foreign-key order (computed from every table prod could describe); a
    table missing on one side, or that ``plan_table`` refuses, gets its error instead of a plan.
    ``versions``: the tables opted in to newer-wins updates, with their version column."""
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
            plans[table] = plan_table(dev_catalog[table], prod_catalog[table], overrides.get(table),
                                      (versions or {}).get(table))
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
