"""The run's connections and table plans (``SyncContext``), shared by every step of one run.

No Dagster here and no SQL: a ``SyncContext`` opens the connections (dev directly, prod through the
configured transport) once, lazily, and keeps them and the table plans for the whole run, so that the
steps of one Dagster run share one SSH connection instead of shaking hands nine times.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import TracebackType

import psycopg

from websync_dagster.core.errors import SyncError
from websync_dagster.core.settings import Settings, reveal
from websync_dagster.engine.dev_side import DevSide, PsycopgDev
from websync_dagster.engine.events import EventSink
from websync_dagster.engine.lock_wait import LockWatch
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.planning import Planning, plan_each_table
from websync_dagster.engine.run_files import RunFiles
from websync_dagster.transport import make_transport
from websync_dagster.transport.base import ProdSession, ProdTransport
from websync_dagster.transport.direct import connect, dev_session_params


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
        self._run_files: dict[str, RunFiles] = {}

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

    def run_files(self, run_id: str) -> RunFiles:
        """The manifest and before-image files of run ``run_id`` (one object per run: its counts add up)."""
        if run_id not in self._run_files:
            self._run_files[run_id] = RunFiles(self.settings.export_dir, run_id)
        return self._run_files[run_id]

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
            self._planning = plan_each_table(self.dev_side.catalog(), self.prod, self.settings.tables,
                                             versions=self.settings.version_columns)
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
def context_for(target: Settings | SyncContext) -> Iterator[SyncContext]:
    """The caller's context, or a new one closed on exit."""
    if isinstance(target, SyncContext):
        yield target
        return
    with SyncContext(target) as ctx:
        yield ctx
