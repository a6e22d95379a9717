"""``direct``: prod reached by a PostgreSQL URL (also the base of the SSH tunnel)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from websync_dagster.core.errors import SyncError, first_line
from websync_dagster.core.redact import Redactor, safe_url
from websync_dagster.transport.base import (
    BeforeCommit,
    CopyIn,
    ProdSession,
    ProdTransport,
    Query,
    Results,
    Statement,
    Step,
    as_json_rows,
    check_step_names,
    lock_timeout_ms,
    session_application_name,
)
from websync_dagster.transport.batches import Batch, batches

CONNECT_TIMEOUT_S = 15
#: TCP keepalives, both ways: libpq notices a dead prod or link, prod notices a vanished client host
#: (about 30 + 3 x 10 s of silence). A paused client on a live host still answers them.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3


def session_timeouts(*, idle_timeout_s: int, wait_s: float) -> dict[str, int]:
    """The timeouts websync sets on each of its sessions, whatever the server's role or database sets
    (the options of the startup packet win over ``ALTER ROLE/DATABASE ... SET``): no statement timeout
    (a load is long by design, bounded by websync's own rules), lock waits bounded by WEBSYNC_WAIT_S
    (engine/lock_wait.py names the holder), and ``idle_in_transaction_session_timeout`` (the server ends a
    session whose transaction stays idle that long, its client paused or gone: the transaction rolls back
    and the table's lock is released; 0: never, for dev)."""
    return {"statement_timeout": 0, "lock_timeout": lock_timeout_ms(wait_s),
            "idle_in_transaction_session_timeout": idle_timeout_s * 1000}


def session_params(url: str, timeouts: dict[str, int]) -> dict[str, Any]:
    """Connection parameters of a websync session: keepalives and ``timeouts``. Server options already in
    ``url`` come last, so that the user's own win."""
    ours = " ".join(f"-c {name}={value}" for name, value in timeouts.items())
    ours += (f" -c tcp_keepalives_idle={KEEPALIVE_IDLE_S} -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S} "
             f"-c tcp_keepalives_count={KEEPALIVE_COUNT}")
    try:
        theirs = conninfo_to_dict(url).get("options") or ""
    except psycopg.ProgrammingError:
        theirs = ""  # a malformed URL: connect() says so in one line
    return {
        "keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE_S, "keepalives_interval": KEEPALIVE_INTERVAL_S,
        "keepalives_count": KEEPALIVE_COUNT, "options": f"{ours} {theirs}".strip(),
    }


def prod_session_params(url: str, idle_timeout_s: int, wait_s: float = 600) -> dict[str, Any]:
    """Connection parameters of a prod session (see ``session_timeouts``), with its own application_name."""
    return {**session_params(url, session_timeouts(idle_timeout_s=idle_timeout_s, wait_s=wait_s)),
            "application_name": session_application_name()}


def dev_session_params(url: str, wait_s: float = 600) -> dict[str, Any]:
    """Connection parameters of a dev session: dev's COPY of a large table is never cut by dev's settings."""
    return session_params(url, session_timeouts(idle_timeout_s=0, wait_s=wait_s))


def connect(
    url: str, *, what: str, shown: str | None = None, redactor: Redactor | None = None, **kwargs: Any
) -> psycopg.Connection:
    """Open a psycopg connection; a failure is one line naming ``what`` and where (``shown``), never a password."""
    redactor = redactor or Redactor()
    where = shown or safe_url(url)
    kwargs.setdefault("application_name", "websync")
    try:
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)
    except psycopg.Error as exc:
        reason = redactor(first_line(exc))
        raise SyncError(f"cannot connect to {what} database at {where}: {reason}") from None
    except Exception as exc:  # malformed URLs raise ProgrammingError / ValueError subclasses
        raise SyncError(f"bad {what} database URL {where}: {redactor(str(exc))}") from None


class PsycopgSession(ProdSession):
    """A prod session over a psycopg connection."""

    supports_fast_path = True

    #: a transaction's statements and queries sent in as few round trips as possible (transport/batches.py); False:
    #: one round trip each, in psycopg's transaction block (what ``benchmarks/round_trips.py`` compares)
    batched: bool = True

    def __init__(self, conn: psycopg.Connection, name: str = "direct") -> None:
        self.conn = conn
        self.name = name
        self.application_name = conn.info.parameter_status("application_name") or "websync"

    def _one_read(self) -> contextlib.AbstractContextManager[Any]:
        """A single read needs no transaction block on an autocommit connection: BEGIN and COMMIT would
        be two more round trips (80 ms on a 40 ms link) for the same snapshot."""
        return contextlib.nullcontext() if self.conn.autocommit else self.conn.transaction()

    def query(self, query: sql.Composable) -> list[dict[str, Any]]:
        with self._one_read(), self.conn.cursor() as cur:
            cur.execute(as_json_rows(query))
            row = cur.fetchone()
        return row[0] if row else []

    def copy_out(self, query: sql.Composable) -> Iterator[bytes]:
        with self._one_read(), self.conn.cursor() as cur, cur.copy(query) as copy:
            for chunk in copy:
                yield bytes(chunk)

    def run_transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> Results:
        check_step_names(steps)
        results = Results()
        if not self.conn.autocommit or not self.batched:
            with self.conn.transaction(), self.conn.cursor() as cur:
                try:
                    for step in steps:
                        self._run_step(cur, step, results)
                    if before_commit is not None:
                        before_commit(results)
                except BaseException as exc:
                    if not isinstance(exc, Exception):
                        self._abandon()
                    raise
            return results
        try:
            with self.conn.cursor() as cur:
                for exchange in batches(steps, commit=before_commit is None):
                    if isinstance(exchange, Batch):
                        self._run_batch(cur, exchange, results)
                    else:
                        self._run_step(cur, exchange, results)
                if before_commit is not None:
                    before_commit(results)
                    cur.execute(sql.SQL("COMMIT"))
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self._abandon()
            elif not self.conn.closed and self.conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    self.conn.execute("ROLLBACK")
            raise
        return results

    def _run_batch(self, cur: psycopg.Cursor[Any], batch: Batch, results: Results) -> None:
        """One query string (transport/batches.py); each statement's result read in order, a query's rows kept."""
        cur.execute(sql.SQL(";\n").join(batch.texts), prepare=False)
        for n in range(len(batch.texts)):
            if n:
                cur.nextset()
            i = n - batch.offset
            if 0 <= i < len(batch.steps) and isinstance(step := batch.steps[i], Query):
                row = cur.fetchone()
                results[step.name] = row[0] if row else []

    @staticmethod
    def _run_step(cur: psycopg.Cursor[Any], step: Step, results: Results) -> None:
        if isinstance(step, Statement):
            cur.execute(step.query)
        elif isinstance(step, Query):
            cur.execute(as_json_rows(step.query))
            row = cur.fetchone()
            results[step.name] = row[0] if row else []
        elif isinstance(step, CopyIn):
            with cur.copy(step.query) as copy:
                for chunk in step.source():
                    copy.write(chunk)
            results[step.name] = [{"rows": cur.rowcount}]

    def _abandon(self) -> None:
        """Interrupted (Ctrl-C) mid-transaction: cancel what prod is running and drop the connection, so
        that prod rolls back and releases the table's lock now, even if it was waiting on a lock itself."""
        with contextlib.suppress(Exception):
            self.conn.cancel_safe(timeout=5)
        self.conn.close()


class DirectTransport(ProdTransport):
    """Prod at a PostgreSQL URL reachable from here."""

    name = "direct"

    def __init__(self, url: str, redactor: Redactor | None = None, idle_timeout_s: int = 60,
                 wait_s: float = 600) -> None:
        self.url = url
        self.redactor = redactor or Redactor()
        self.idle_timeout_s = idle_timeout_s
        self.wait_s = wait_s

    def describe(self) -> str:
        return f"direct {safe_url(self.url)}"

    @contextlib.contextmanager
    def session(self) -> Iterator[PsycopgSession]:
        conn = connect(self.url, what="prod", redactor=self.redactor, autocommit=True,
                       **prod_session_params(self.url, self.idle_timeout_s, self.wait_s))
        try:
            yield PsycopgSession(conn, self.name)
        finally:
            conn.close()
