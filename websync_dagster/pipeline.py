"""The four modes as plain functions: what the Dagster assets, ops and sensor call.

No Dagster here and no SQL: a ``SyncContext`` opens the connections (dev directly, prod through the
configured transport) once, lazily, and keeps them and the table plans for the whole run, so that the
steps of one Dagster run share one SSH connection instead of shaking hands nine times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import psycopg

from websync_dagster.settings import Settings
from websync_dagster.sync.catalog import read_catalog
from websync_dagster.sync.diff import TableDiff, diff_table
from websync_dagster.sync.errors import SyncError, TableSyncError
from websync_dagster.sync.export import ExportResult, export_path, export_table
from websync_dagster.sync.load import LoadResult, load_export
from websync_dagster.sync.order import check_declared_order
from websync_dagster.sync.plan import TablePlan
from websync_dagster.sync.progress import Reporter
from websync_dagster.sync.status import prod_counts, web_sources_detail
from websync_dagster.sync.tables import plan_tables, prod_key_sets
from websync_dagster.transport import make_transport
from websync_dagster.transport.base import ProdSession, ProdTransport
from websync_dagster.transport.direct import PsycopgSession, connect

REJECT_SUBDIR = "rejects"


def stamp_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d_%H%M%S")


class SyncContext:
    """Connections and plans for one run; close() (or ``with``) releases them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.transport: ProdTransport = make_transport(settings)
        self._stack = contextlib.ExitStack()
        self._dev: psycopg.Connection | None = None
        self._prod: ProdSession | None = None
        self._plans: dict[str, TablePlan] | None = None

    def __enter__(self) -> SyncContext:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        self._dev = self._prod = None
        self._plans = None

    @property
    def dev(self) -> psycopg.Connection:
        if self._dev is None or self._dev.closed:
            settings = self.settings
            self._dev = connect(settings.dev_url, what="dev", redactor=settings.redactor(), autocommit=True)
            self._stack.callback(self._dev.close)
        return self._dev

    @property
    def prod(self) -> ProdSession:
        if self._prod is None:
            self._prod = self._stack.enter_context(self.transport.session())
        return self._prod

    def plans(self) -> dict[str, TablePlan]:
        """Plans of every synced table, in FK order, read once per context."""
        if self._plans is None:
            self._plans = plan_tables(PsycopgSession(self.dev), self.prod, self.settings.tables)
        return self._plans

    def plan(self, table: str) -> TablePlan:
        if table not in self.settings.tables:
            raise SyncError(f"table {table} is not in WEBSYNC_TABLES ({', '.join(self.settings.tables)})")
        return self.plans()[table]


@contextlib.contextmanager
def _context(target: Settings | SyncContext) -> Iterator[SyncContext]:
    """The caller's context, or a new one closed on exit."""
    if isinstance(target, SyncContext):
        yield target
        return
    with SyncContext(target) as ctx:
        yield ctx


def run_export(
    target: Settings | SyncContext, table: str, *, scope: str, stamp: str | None = None,
    report: Reporter | None = None,
) -> ExportResult:
    """``scope="delta"``: the rows prod lacks (needs prod); ``"all"``: every row and column, dev only."""
    if scope not in ("delta", "all"):
        raise SyncError(f"export scope must be 'delta' or 'all', not {scope!r}")
    with _context(target) as ctx:
        path = export_path(ctx.settings.export_dir, table, stamp or stamp_now())
        try:
            if scope == "all":
                dev_columns = read_catalog(PsycopgSession(ctx.dev), [table], side="dev")[table].column_names
                return export_table(ctx.dev, table, dev_columns, path, report=report)
            plan = ctx.plan(table)
            return export_table(ctx.dev, table, plan.shipped, path, prod_key_sets=prod_key_sets(ctx.prod, plan),
                                overrides=plan.overrides, report=report)
        except SyncError:
            raise
        except Exception as exc:  # a connection lost mid-COPY, a full disk...: one line naming the table
            reason = ctx.settings.redactor()(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise TableSyncError(table, f"export failed: {type(exc).__name__}: {reason}") from exc


@dataclass(frozen=True)
class LoadOutcome:
    plan: TablePlan
    result: LoadResult
    export: ExportResult


def run_load(
    target: Settings | SyncContext,
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
    with _context(target) as ctx:
        plans = ctx.plans()
        check_declared_order(declared_deps, {t: p.prod for t, p in plans.items() if p.prod is not None})
        plan = ctx.plan(table)
        if tuple(export.columns) != plan.shipped:
            raise TableSyncError(table, f"the schema changed since the export ({export.path}): export again")
        sent_before = ctx.transport.wire_bytes_sent()
        result = load_export(
            ctx.prod,
            plan,
            Path(export.path),
            rows=export.rows,
            reject_dir=ctx.settings.export_dir / REJECT_SUBDIR,
            stamp=stamp or stamp_now(),
            already_in_prod=export.already_in_prod,
            report=report,
        )
        for name, n in export.clashes.items():
            result.skipped[name] = result.skipped.get(name, 0) + n
        sent_after = ctx.transport.wire_bytes_sent()
        if sent_after is not None:
            result.wire_bytes = sent_after - (sent_before or 0)
        return LoadOutcome(plan, result, export)


def run_status(target: Settings | SyncContext) -> tuple[dict[str, int], list[dict[str, object]]]:
    with _context(target) as ctx:
        return prod_counts(ctx.prod, ctx.settings.tables), web_sources_detail(ctx.prod)


def run_diff(target: Settings | SyncContext) -> list[TableDiff]:
    with _context(target) as ctx:
        dev_session = PsycopgSession(ctx.dev)
        return [diff_table(dev_session, ctx.prod, plan) for plan in ctx.plans().values()]
