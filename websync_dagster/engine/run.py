"""The four modes as plain functions: what the Dagster assets, ops and sensor call.

No Dagster here and no SQL: a ``SyncContext`` opens the connections (dev directly, prod through the
configured transport) once, lazily, and keeps them and the table plans for the whole run, so that the
steps of one Dagster run share one SSH connection instead of shaking hands nine times.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import psycopg

from websync_dagster.core.errors import ConfigError, SyncError, TableSyncError, first_line
from websync_dagster.core.settings import Settings, reveal
from websync_dagster.engine.catalog import read_catalog
from websync_dagster.engine.delta import prod_keys
from websync_dagster.engine.dev_side import DevSide, PsycopgDev
from websync_dagster.engine.diff import TableDiff, diff_table
from websync_dagster.engine.diff_cache import DiffCache
from websync_dagster.engine.events import EventSink, Reconnecting, TableStarted
from websync_dagster.engine.export import ExportResult, export_path
from websync_dagster.engine.failure import ExportFailed, NotLoaded, internal_error, is_bug, link_reason
from websync_dagster.engine.follow import FollowedFile
from websync_dagster.engine.load import LoadResult, load_export, load_followed
from websync_dagster.engine.lock_wait import LockWatch
from websync_dagster.engine.order import check_declared_order
from websync_dagster.engine.outcome import outcome_events
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.planning import Planning, plan_each_table
from websync_dagster.engine.status import prod_counts, web_sources_detail
from websync_dagster.transport import make_transport
from websync_dagster.transport.base import ProdSession, ProdTransport
from websync_dagster.transport.direct import PsycopgSession, connect, dev_session_params

REJECT_SUBDIR = "rejects"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


#: a table whose link to prod breaks is retried this many times in the same run, after 1, 2, 4 s
RECONNECT_ATTEMPTS = 3
RECONNECT_PAUSE_S = 1.0


def new_run_id() -> str:
    """A run id for a sync started outside Dagster: the UTC time, then random hex."""
    return f"{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:12]}"


def checked_run_id(run_id: str | None) -> str:
    """The run id that names every file the run writes (a new one when None); refused unless it is a
    plain file-name part, so that no run id can point a file outside the export dir."""
    if run_id is None:
        return new_run_id()
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"run id {run_id!r} cannot name a file: use letters, digits, '_', '-' and '.'")
    return run_id


class SyncContext:
    """Connections and plans for one run; close() (or ``with``) releases them.

    ``transport`` and ``dev``: how prod is reached and dev read, when not from ``settings`` (the fast tests
    give in-memory ones)."""

    def __init__(self, settings: Settings, *, transport: ProdTransport | None = None,
                 dev: DevSide | None = None) -> None:
        self.settings = settings
        self._transport: ProdTransport | None = transport
        self.dev_side: DevSide = dev if dev is not None else PsycopgDev(lambda: self.dev)
        self._stack = contextlib.ExitStack()
        self._prod_stack = contextlib.ExitStack()
        self._dev: psycopg.Connection | None = None
        self._prod: ProdSession | None = None
        self._side: ProdSession | None = None
        self._side_lock = threading.Lock()
        self._planning: Planning | None = None

    def __enter__(self) -> SyncContext:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._prod_stack.close()
        self._stack.close()
        self._dev = self._prod = self._side = None
        self._planning = None

    @property
    def transport(self) -> ProdTransport:
        """How prod is reached, made on first use: an offline export never needs to know."""
        if self._transport is None:
            self._transport = make_transport(self.settings)
        return self._transport

    @property
    def dev(self) -> psycopg.Connection:
        if self._dev is None or self._dev.closed:
            settings = self.settings
            dev_url = reveal(settings.dev_url) or ""
            self._dev = connect(dev_url, what="dev", redactor=settings.redactor(), autocommit=True,
                                **dev_session_params(dev_url, settings.wait_s))
            self._stack.callback(self._dev.close)
        return self._dev

    @property
    def prod(self) -> ProdSession:
        if self._prod is None:
            self._prod = self._prod_stack.enter_context(self.transport.session())
        return self._prod

    def side_session(self) -> ProdSession:
        """A second prod session, opened on first use and kept for the run: to ask prod who holds a lock the
        load waits for (engine/lock_wait.py), from another thread while the load's session waits."""
        with self._side_lock:
            if self._side is None:
                self._side = self._prod_stack.enter_context(self.transport.session())
            return self._side

    def lock_watch(self, table: str, report: EventSink | None) -> LockWatch:
        return LockWatch(table, self.settings.wait_s, self.side_session, report)

    @property
    def prod_open(self) -> bool:
        return self._prod is not None

    def prod_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the open prod session's link broke (then ``reconnect`` may complete the work)."""
        return self._prod is not None and self._prod.connection_lost(exc)

    def reconnect(self) -> None:
        """Drop the prod session (what it had not committed is rolled back by prod); the next use opens one."""
        with contextlib.suppress(Exception):
            self._prod_stack.close()
        self._prod = self._side = None

    def planning(self) -> Planning:
        """Each synced table's plan or planning error, in FK order, read once per context."""
        if self._planning is None:
            self._planning = plan_each_table(self.dev_side.catalog(), self.prod, self.settings.tables)
        return self._planning

    def plans(self) -> dict[str, TablePlan]:
        """Plans of every synced table, in FK order; the first table that cannot be planned raises."""
        return self.planning().every_plan()

    def plan(self, table: str) -> TablePlan:
        """The table's plan, or the error that stops that table (and only it)."""
        if table not in self.settings.tables:
            raise SyncError(f"table {table} is not in WEBSYNC_TABLES ({', '.join(self.settings.tables)})")
        return self.planning().plan(table)


@contextlib.contextmanager
def _context(target: Settings | SyncContext) -> Iterator[SyncContext]:
    """The caller's context, or a new one closed on exit."""
    if isinstance(target, SyncContext):
        yield target
        return
    with SyncContext(target) as ctx:
        yield ctx


def run_export(
    target: Settings | SyncContext, table: str, *, scope: str, run_id: str | None = None,
    report: EventSink | None = None, follow: FollowedFile | None = None,
) -> ExportResult:
    """``scope="delta"``: the rows prod lacks (needs prod); ``"all"``: every row and column, dev only.
    ``follow`` lets a load read the file while it is written (see ``run_tables``). The file is the
    run's own: ``run_id`` (a new one when None) is in its name and it is created exclusively."""
    if scope not in ("delta", "all"):
        raise SyncError(f"export scope must be 'delta' or 'all', not {scope!r}")
    with _context(target) as ctx:
        path = export_path(ctx.settings.export_dir, table, checked_run_id(run_id))
        try:
            if scope == "all":
                dev_columns = read_catalog(ctx.dev_side.catalog(), [table], side="dev")[table].column_names
                return ctx.dev_side.export(table, dev_columns, path, report=report,
                                           progress_every_s=ctx.settings.progress_every_s)
            plan = ctx.plan(table)
            keys = prod_keys(ctx.prod, plan, ctx.planning().prod_digests)
            return ctx.dev_side.export(table, plan.shipped, path, prod_keys=keys, overrides=plan.overrides,
                                       report=report, follow=follow, progress_every_s=ctx.settings.progress_every_s)
        except SyncError:
            raise
        except Exception as exc:  # a connection lost mid-COPY, a full disk...: one line naming the table
            if is_bug(exc):
                raise internal_error(table, exc, ctx.settings.redactor()) from exc
            reason = ctx.settings.redactor()(first_line(exc))
            raise ExportFailed(table, f"export failed: {type(exc).__name__}: {reason}") from exc


@dataclass(frozen=True)
class LoadOutcome:
    plan: TablePlan
    result: LoadResult
    export: ExportResult


def _checked_plan(ctx: SyncContext, table: str, declared_deps: Mapping[str, Sequence[str]]) -> TablePlan:
    """The table's plan, once the declared load order is checked against prod's foreign keys (of every
    table prod could describe, planned or not)."""
    check_declared_order(declared_deps, ctx.planning().prod_catalog)
    return ctx.plan(table)


def _account(ctx: SyncContext, result: LoadResult, export: ExportResult, sent_before: int | None) -> None:
    """Add what the export left out (other unique keys) and the bytes sent over the link."""
    for name, n in export.clashes.items():
        result.skipped[name] = result.skipped.get(name, 0) + n
    sent_after = ctx.transport.wire_bytes_sent()
    if sent_after is not None:
        result.wire_bytes = sent_after - (sent_before or 0)


def run_load(
    target: Settings | SyncContext,
    table: str,
    export: ExportResult,
    *,
    declared_deps: Mapping[str, Sequence[str]],
    run_id: str | None = None,
    report: EventSink | None = None,
) -> LoadOutcome:
    """Insert an export file into prod, after checking the declared load order against prod's foreign keys."""
    if export.scope != "delta":
        raise TableSyncError(table, f"{export.path} is a full export ({export.scope}); a sync loads only deltas")
    with _context(target) as ctx:
        plan = _checked_plan(ctx, table, declared_deps)
        if tuple(export.columns) != plan.shipped:
            raise TableSyncError(table, f"the schema changed since the export ({export.path}): export again")
        if not Path(export.path).is_file():
            raise TableSyncError(table, f"the export file {export.path} is gone: export {table} again")
        sent_before = ctx.transport.wire_bytes_sent()
        result = load_export(
            ctx.prod,
            plan,
            Path(export.path),
            rows=export.rows,
            reject_dir=ctx.settings.export_dir / REJECT_SUBDIR,
            stamp=checked_run_id(run_id),
            already_in_prod=export.already_in_prod,
            commit_every_s=ctx.settings.commit_every_s,
            report=report,
            watch=ctx.lock_watch(table, report),
            progress_every_s=ctx.settings.progress_every_s,
        )
        _account(ctx, result, export, sent_before)
        return LoadOutcome(plan, result, export)


#: how long a load that stopped waits for its export to end (dev's statement cancelled again every
#: EXPORT_CANCEL_EVERY_S: a cancel that lands between two statements is lost), before dev's socket is shut down
EXPORT_STOP_S, EXPORT_CANCEL_EVERY_S = 2.0, 0.5


class _ExportThread:
    """The delta export of one table in a thread, writing a file that the load follows. A load that stops
    before the end of the file (interrupted, its link lost, a failure) ends the export with it (``stop``)."""

    def __init__(self, ctx: SyncContext, table: str, run_id: str, report: EventSink | None) -> None:
        self.followed = FollowedFile()
        # the export's link to dev (reopened here if broken), ended from the load's thread
        self._stopper = ctx.dev_side.stopper()
        self._result: ExportResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(ctx, table, run_id, report),
                                        name=f"websync-export-{table}", daemon=True)
        self._thread.start()

    def _run(self, ctx: SyncContext, table: str, run_id: str, report: EventSink | None) -> None:
        try:
            self._result = run_export(ctx, table, scope="delta", run_id=run_id, report=report, follow=self.followed)
        except BaseException as exc:  # handed to the load's thread by finish()
            self._error = exc
            self.followed.finished(exc)

    def finish(self) -> ExportResult:
        """Wait for the export; its result, or its error raised here. Called once the load read the whole
        file, or the export failed (the load that stops for its own reason calls ``stop``)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def result(self) -> ExportResult | None:
        """The export's result; None if it failed or was stopped."""
        return self._result

    def stop(self) -> None:
        """End the export now if the load stopped before the end of the file, rather than let dev send the
        rest of the table; within about EXPORT_STOP_S. The export is told to stop at its next chunk and
        dev's statement is cancelled, again until the export ends; then dev's socket is shut down (the
        export's call fails, and the next use of ``SyncContext.dev`` opens another connection)."""
        if self.followed.done:  # written to the end (or failed): the thread is only returning
            self._thread.join(EXPORT_STOP_S)
            return
        self.followed.cancel()
        deadline = time.monotonic() + EXPORT_STOP_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                self._stopper.cancel(timeout=EXPORT_STOP_S)
            self._thread.join(EXPORT_CANCEL_EVERY_S)
        if self._thread.is_alive():
            self._stopper.shut_down()
            self._thread.join(EXPORT_CANCEL_EVERY_S)


@dataclass
class TableRun:
    """What one table's turn in a sync produced: its export, its load, or the error that stopped it."""

    table: str
    export: ExportResult | None = None
    load: LoadOutcome | None = None
    error: SyncError | None = None
    #: loaded without its export selected: the delta was exported again, so that the counts are prod's now
    reexported: bool = False
    #: rows the table's committed units inserted (if it stopped midway: what stays in prod)
    committed: int = 0

    @property
    def landed(self) -> bool:
        """Loaded, with every shipped row accounted for by the server's counts."""
        return self.load is not None and self.load.result.lost == 0


def run_tables(
    ctx: SyncContext,
    *,
    export: Sequence[str],
    load: Sequence[str],
    scope: str = "delta",
    declared_deps: Mapping[str, Sequence[str]],
    run_id: str | None = None,
    report: EventSink | None = None,
) -> Iterator[TableRun]:
    """Export and/or load tables in FK order, one ``TableRun`` each, as each finishes.

    A table loaded (delta) is streamed: the load follows the export file as it is written. A table
    loaded without being exported is exported again first: an export recorded earlier may predate
    prod's current state, and the counts must be prod's. A table that cannot be planned, or whose
    declared dependencies did not land, is not loaded (its error says why); the others are. Every
    file the run writes has ``run_id`` in its name (Dagster's run id; None: a new one).
    """
    run_id = checked_run_id(run_id)
    not_landed: list[str] = []
    for table in [t for t in ctx.settings.tables if t in export or t in load]:
        run = TableRun(table)
        blocked = [d for d in declared_deps.get(table, ()) if d in not_landed and d in load]
        if report is not None:
            report(TableStarted(table, export=table in export, load=table in load))
        try:
            _run_table(ctx, run, exported=table in export, loaded=table in load, scope=scope,
                       declared_deps=declared_deps, blocked=blocked, run_id=run_id, report=report)
        except SyncError as exc:
            run.error = exc
        except GeneratorExit:
            raise
        except Exception as exc:  # a bug met by this table: said as one, and the other tables still run
            run.error = internal_error(table, exc, ctx.settings.redactor())
            run.error.__cause__ = exc
        except BaseException as exc:
            # Ctrl-C or SIGTERM (KeyboardInterrupt, or Dagster's interruption): say which table and what prod
            # kept of it, and stop the run
            said = (f"interrupted; the unit in flight was rolled back, {run.committed} rows committed before stay; "
                    "the next run ships only what prod lacks") if table in load else "interrupted during its export"
            raise TableSyncError(table, said) from exc
        if table in load and not run.landed:
            not_landed.append(table)
        if report is not None:
            for event in outcome_events(run, ctx.settings.redactor()):
                report(event)
        yield run


def _run_table(
    ctx: SyncContext, run: TableRun, *, exported: bool, loaded: bool, scope: str,
    declared_deps: Mapping[str, Sequence[str]], blocked: Sequence[str], run_id: str, report: EventSink | None,
) -> None:
    """One table's turn in ``run_tables``; fills ``run`` or raises the error that stops the table."""
    table = run.table
    if loaded and blocked:
        if exported:
            run.export = run_export(ctx, table, scope=scope, run_id=run_id, report=report)
        raise NotLoaded(table, f"not loaded: {', '.join(blocked)} did not land in prod")
    if loaded and (scope == "delta" or not exported):
        run.reexported = not exported
        _export_and_load_reconnecting(ctx, run, declared_deps, run_id, report)
    elif exported:
        run.export = run_export(ctx, table, scope=scope, run_id=run_id, report=report)
        if loaded:  # a full export: refused with the reason
            run.load = run_load(ctx, table, run.export, declared_deps=declared_deps, run_id=run_id, report=report)


def _export_and_load_reconnecting(
    ctx: SyncContext, run: TableRun, declared_deps: Mapping[str, Sequence[str]], run_id: str,
    report: EventSink | None,
) -> None:
    """``_export_and_load``; when the link to prod breaks mid-table (SSH cut, prod restarted, backend
    terminated), prod rolls back the commit unit in flight and the same run reconnects, after a pause
    that doubles each time, and ships the table's delta again, which is what prod lacks now: the units
    committed before the cut stay, nothing is lost or duplicated. Each retry is one line; after
    ``RECONNECT_ATTEMPTS`` the table fails as before."""
    reconnecting = False
    loaded = LoadResult(table=run.table)  # what the attempts committed
    for attempt in range(RECONNECT_ATTEMPTS + 1):
        try:
            _export_and_load(ctx, run, declared_deps, run_id if attempt == 0 else f"{run_id}.{attempt}", report,
                             loaded)
            return
        except SyncError as exc:
            failed_to_reopen = reconnecting and not ctx.prod_open  # prod still restarting, the link still down
            lost = ctx.prod_lost(exc) or failed_to_reopen
            if attempt == RECONNECT_ATTEMPTS or not lost:
                if lost:
                    ctx.reconnect()  # the tables after this one try a new session, not the broken one
                raise
            reconnecting = True
            pause = RECONNECT_PAUSE_S * 2 ** attempt
            if report is not None:
                reason = link_reason(exc, ctx.settings.redactor())
                side = "dev" if isinstance(exc, ExportFailed) else "prod"  # dev's backend ended, dev restarted
                report(Reconnecting(run.table, side, reason, loaded.inserted, pause, attempt + 1, RECONNECT_ATTEMPTS))
            ctx.reconnect()
            loaded.keep_only_inserted()
            time.sleep(pause)


def _export_and_load(
    ctx: SyncContext, run: TableRun, declared_deps: Mapping[str, Sequence[str]], run_id: str,
    report: EventSink | None, loaded: LoadResult,
) -> None:
    """The delta export in a thread and the load following its file: the overlap of a raw COPY pipe.
    Each commit unit commits once its rows are sent (see engine/units.py); ``loaded`` holds what
    earlier attempts committed and gets this one's units. ``run.export`` is set even if the load fails."""
    plan = _checked_plan(ctx, run.table, declared_deps)
    prod = ctx.prod  # opened here: the export thread then only borrows it to read prod's keys
    sent_before = ctx.transport.wire_bytes_sent()
    exporter = _ExportThread(ctx, run.table, run_id, report)
    try:
        result = load_followed(prod, plan, exporter.followed, exporter.finish,
                               reject_dir=ctx.settings.export_dir / REJECT_SUBDIR, stamp=run_id,
                               commit_every_s=ctx.settings.commit_every_s, into=loaded, report=report,
                               watch=ctx.lock_watch(run.table, report),
                               progress_every_s=ctx.settings.progress_every_s)
    finally:
        run.committed = loaded.inserted
        exporter.stop()  # the load stopped before the end of the file: the export ends with it
        run.export = exporter.result
        exporter.followed.close()
    assert run.export is not None
    _account(ctx, result, run.export, sent_before)
    run.load = LoadOutcome(plan, result, run.export)


def run_status(target: Settings | SyncContext) -> tuple[dict[str, int], list[dict[str, object]]]:
    with _context(target) as ctx:
        return prod_counts(ctx.prod, ctx.settings.tables), web_sources_detail(ctx.prod)


def run_diff(target: Settings | SyncContext, cache_dir: Path | None = None) -> list[TableDiff]:
    """``cache_dir``: where each side's per-bucket figures are kept between calls, so that the next diff hashes
    again only the rows of buckets that changed (see sync/diff_cache.py); None hashes every row."""
    cache = DiffCache(cache_dir) if cache_dir is not None else None
    with _context(target) as ctx:
        dev_session = PsycopgSession(ctx.dev)
        return [diff_table(dev_session, ctx.prod, plan, cache) for plan in ctx.plans().values()]
