"""Waits for prod's locks, bounded and named.

A prod session holding a lock websync needs (a migration's ``CREATE INDEX`` holds ``SHARE`` on
``web_pages``; another sync, or a hand-run ``psql``, the table's advisory lock; the app's own insert of
the same page, that row's lock) makes a commit unit wait. Every websync session carries
``lock_timeout = WEBSYNC_WAIT_S`` (see transport/direct.py and transport/psql.py), so prod itself ends
the wait with SQLSTATE 55P03. Meanwhile a watcher names the holder: once a unit has been running for
``~10 s`` it asks prod, from a second session, which backends block websync's (``pg_blocking_pids`` and
``pg_stat_activity``), and says so in one line; when the bound is reached, the table fails with a line
naming that holder.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from psycopg import sql

from websync_dagster.core.errors import TableSyncError
from websync_dagster.engine.catalog import QuerySession
from websync_dagster.engine.events import EventSink, LockHolder, LockWaiting

__all__ = ["LockHolder", "LockWaitGaveUp", "LockWatch", "blocking_holders", "lock_timed_out"]

#: SQLSTATE of a lock wait that ``lock_timeout`` ended
LOCK_NOT_AVAILABLE = "55P03"
#: seconds a unit runs before the watcher first asks who blocks it (at most half of WEBSYNC_WAIT_S)
FIRST_LOOK_S = 10.0
#: seconds between two looks once it looks
LOOK_EVERY_S = 5.0
QUERY_SHOWN = 120

_HOLDERS = sql.SQL(
    "SELECT DISTINCT b.pid, coalesce(b.application_name, '') AS application, coalesce(b.usename::text, '') AS usename, "
    "to_char(coalesce(b.xact_start, b.query_start, b.backend_start), 'YYYY-MM-DD HH24:MI:SS TZ') AS since, "
    "coalesce(b.state, '') AS state, left(regexp_replace(coalesce(b.query, ''), '\\s+', ' ', 'g'), {shown}) AS query "
    "FROM pg_stat_activity AS w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS h(pid) "
    "JOIN pg_stat_activity AS b ON b.pid = h.pid WHERE w.application_name = {name} ORDER BY b.pid"
)


class LockWaitGaveUp(TableSyncError):
    """A commit unit's wait for a lock on prod reached WEBSYNC_WAIT_S."""

    kind = "lock"


def blocking_holders(session: QuerySession, application_name: str) -> list[LockHolder]:
    """The backends that block the prod sessions named ``application_name``."""
    rows = session.query(_HOLDERS.format(shown=sql.Literal(QUERY_SHOWN), name=sql.Literal(application_name)))
    return [LockHolder.from_row(r) for r in rows]


def lock_timed_out(exc: BaseException) -> bool:
    """Whether ``exc``, or what caused it, is prod ending a lock wait at ``lock_timeout``."""
    current: BaseException | None = exc
    while current is not None:
        if getattr(current, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return True
        current = current.__cause__ or current.__context__
    return False


class LockWatch:
    """Names what a table's commit unit waits for in prod.

    ``side_session`` opens (once, lazily) a second prod session to ask from; ``report`` is told each new
    holder (``LockWaiting``).
    """

    def __init__(self, table: str, wait_s: float, side_session: Callable[[], QuerySession],
                 report: EventSink | None, *, first_look_s: float | None = None) -> None:
        self.table = table
        self.wait_s = wait_s
        self._side_session = side_session
        self._report = report
        self._first_look_s = min(FIRST_LOOK_S if first_look_s is None else first_look_s, wait_s / 2)
        self.holders: list[LockHolder] = []
        self._said: set[int] = set()

    @contextlib.contextmanager
    def watching(self, application_name: str, committed_rows: int) -> Iterator[None]:
        """While the body runs (one unit's transaction), look for what blocks ``application_name``; a lock
        wait that prod ended at the bound becomes the table's failure, naming the holder."""
        stop = threading.Event()
        looker = threading.Thread(target=self._look, args=(application_name, stop), daemon=True,
                                  name=f"websync-lock-watch-{self.table}")
        looker.start()
        try:
            yield
        except Exception as exc:
            if lock_timed_out(exc):
                raise self.gave_up(committed_rows) from exc
            raise
        finally:
            stop.set()

    def gave_up(self, committed_rows: int) -> LockWaitGaveUp:
        held = "; ".join(h.describe() for h in self.holders) or "another session (it had gone when websync looked)"
        return LockWaitGaveUp(self.table, f"waited {self.wait_s:g} s (WEBSYNC_WAIT_S) for a lock on prod held by "
                              f"{held}; gave up: the unit in flight was rolled back ({committed_rows} rows "
                              "committed before stay)")

    def _look(self, application_name: str, stop: threading.Event) -> None:
        if stop.wait(self._first_look_s):
            return
        while not stop.is_set():
            try:
                holders = blocking_holders(self._side_session(), application_name)
            except Exception:  # noqa: BLE001 - naming the holder is a courtesy; the wait stays bounded by prod
                return
            if holders and not stop.is_set():
                self.holders = holders
                new = [h for h in holders if h.pid not in self._said]
                if new and self._report is not None:
                    self._said.update(h.pid for h in new)
                    self._report(LockWaiting(self.table, tuple(new), self.wait_s))
            if stop.wait(LOOK_EVERY_S):
                return
