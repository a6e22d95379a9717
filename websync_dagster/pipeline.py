"""The four modes as plain functions over Settings: what the Dagster assets, ops and sensor call.

No Dagster here and no SQL: this module opens the connections (dev directly, prod through the
configured transport) and hands them to the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from websync_dagster.settings import Settings
from websync_dagster.sync.catalog import read_catalog
from websync_dagster.sync.diff import TableDiff, diff_table
from websync_dagster.sync.errors import SyncError, TableSyncError
from websync_dagster.sync.export import ExportResult, count_delta, export_path, export_table
from websync_dagster.sync.load import LoadResult, load_export
from websync_dagster.sync.order import check_declared_order
from websync_dagster.sync.plan import TablePlan
from websync_dagster.sync.progress import Reporter
from websync_dagster.sync.status import prod_counts, web_sources_detail
from websync_dagster.sync.tables import plan_tables, prod_key_sets
from websync_dagster.transport import make_transport
from websync_dagster.transport.base import ProdSession
from websync_dagster.transport.direct import PsycopgSession, connect

REJECT_SUBDIR = "rejects"


def stamp_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d_%H%M%S")


@contextlib.contextmanager
def dev_connection(settings: Settings) -> Iterator[psycopg.Connection]:
    conn = connect(settings.dev_url, what="dev", redactor=settings.redactor(), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def prod_session(settings: Settings) -> Iterator[ProdSession]:
    with make_transport(settings).session() as session:
        yield session


def _plan(dev: psycopg.Connection, prod: ProdSession, settings: Settings, table: str) -> TablePlan:
    if table not in settings.tables:
        raise SyncError(f"table {table} is not in WEBSYNC_TABLES ({', '.join(settings.tables)})")
    return plan_tables(PsycopgSession(dev), prod, settings.tables)[table]


def run_export(
    settings: Settings, table: str, *, scope: str, stamp: str | None = None, report: Reporter | None = None
) -> ExportResult:
    """``scope="delta"``: the rows prod lacks (needs prod); ``"all"``: every row and column, dev only."""
    path = export_path(settings.export_dir, table, stamp or stamp_now())
    with dev_connection(settings) as dev:
        if scope == "all":
            dev_columns = read_catalog(PsycopgSession(dev), [table], side="dev")[table].column_names
            return export_table(dev, table, dev_columns, path, report=report)
        if scope != "delta":
            raise SyncError(f"export scope must be 'delta' or 'all', not {scope!r}")
        with prod_session(settings) as prod:
            plan = _plan(dev, prod, settings, table)
            return export_table(
                dev, table, plan.shipped, path, prod_key_sets=prod_key_sets(prod, plan), overrides=plan.overrides,
                report=report,
            )


@dataclass(frozen=True)
class LoadOutcome:
    plan: TablePlan
    result: LoadResult
    export: ExportResult
    #: dev rows prod still lacks after the load; the rejected ones, unless a shipped row went missing
    still_missing: int

    @property
    def lost(self) -> int:
        """Rows shipped, not rejected, and yet not in prod."""
        return max(0, self.still_missing - self.result.rejected)


def run_load(
    settings: Settings,
    table: str,
    export: ExportResult,
    *,
    declared_deps: Mapping[str, Sequence[str]],
    stamp: str | None = None,
    report: Reporter | None = None,
) -> LoadOutcome:
    """Insert the export into prod, after checking the declared load order against prod's foreign keys."""
    if export.scope != "delta":
        raise TableSyncError(table, f"{export.path} is a full export ({export.scope}); a sync loads only deltas")
    transport = make_transport(settings)
    with dev_connection(settings) as dev, transport.session() as prod:
        plans = plan_tables(PsycopgSession(dev), prod, settings.tables)
        check_declared_order(declared_deps, {t: p.prod for t, p in plans.items() if p.prod is not None})
        plan = plans[table]
        if tuple(export.columns) != plan.shipped:
            raise TableSyncError(table, f"the schema changed since the export ({export.path}): export again")
        result = load_export(
            prod,
            plan,
            Path(export.path),
            rows=export.rows,
            reject_dir=settings.export_dir / REJECT_SUBDIR,
            stamp=stamp or stamp_now(),
            already_in_prod=export.already_in_prod,
            report=report,
        )
        for name, n in export.clashes.items():
            result.skipped[name] = result.skipped.get(name, 0) + n
        still_missing = count_delta(dev, table, prod_key_sets(prod, plan)) if export.rows else result.rejected
    result.wire_bytes = transport.wire_bytes_sent()
    return LoadOutcome(plan, result, export, still_missing)


def run_status(settings: Settings) -> tuple[dict[str, int], list[dict[str, object]]]:
    with prod_session(settings) as prod:
        return prod_counts(prod, settings.tables), web_sources_detail(prod)


def run_diff(settings: Settings) -> list[TableDiff]:
    with dev_connection(settings) as dev, prod_session(settings) as prod:
        plans = plan_tables(PsycopgSession(dev), prod, settings.tables)
        dev_session = PsycopgSession(dev)
        return [diff_table(dev_session, prod, plan) for plan in plans.values()]
