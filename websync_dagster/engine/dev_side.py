"""How a run reads dev: its catalog, and a table's export file.

A run reads dev through one ``DevSide`` as it reaches prod through one ``ProdTransport``: the real side is a
psycopg connection (``PsycopgDev``); the fast test layer gives one over rows in memory, so that the engine's
rules (the commit units, the retry after a lost link, the accounting, the isolation of tables) run without
a server.
"""

from __future__ import annotations

import contextlib
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from websync_dagster.engine.catalog import QuerySession
from websync_dagster.engine.delta import ProdKeys
from websync_dagster.engine.events import EventSink
from websync_dagster.engine.export import ExportResult, export_table
from websync_dagster.engine.follow import FollowedFile
from websync_dagster.engine.progress import DEFAULT_EVERY_S
from websync_dagster.transport.direct import PsycopgSession


class ExportStopper(ABC):
    """Ends, from the load's thread, an export running in another thread (see ``export_thread.ExportThread.stop``)."""

    @abstractmethod
    def cancel(self, timeout: float) -> None:
        """Cancel dev's statement in flight, if any, waiting at most ``timeout`` s (a cancel landing between
        two statements is lost)."""

    @abstractmethod
    def shut_down(self) -> None:
        """Break the export's link to dev under the thread blocked on it: its call fails."""


class DevSide(ABC):
    """Dev, as a run reads it."""

    @abstractmethod
    def catalog(self) -> QuerySession:
        """Where dev's catalog is read (the plans, a full export's columns)."""

    @abstractmethod
    def export(
        self, table: str, columns: Sequence[str], path: Path, *, prod_keys: ProdKeys | None = None,
        overrides: Mapping[str, Any] | None = None, report: EventSink | None = None,
        follow: FollowedFile | None = None, progress_every_s: float = DEFAULT_EVERY_S,
    ) -> ExportResult:
        """Write ``columns`` of ``table`` to ``path`` (with ``prod_keys``: only the rows prod lacks); see
        ``export.export_table``, whose contract every side keeps."""

    @abstractmethod
    def stopper(self) -> ExportStopper:
        """What ends the export about to start on this side (taken before it starts: the export's own link)."""


class _ConnectionStopper(ExportStopper):
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def cancel(self, timeout: float) -> None:
        self._conn.cancel_safe(timeout=timeout)

    def shut_down(self) -> None:
        """Shut the socket down rather than close the connection: closing it from here would free what the
        export's thread is using."""
        with contextlib.suppress(Exception), socket.socket(fileno=os.dup(self._conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)


class PsycopgDev(DevSide):
    """Dev over a psycopg connection; ``connection`` returns the run's (opening it, or another once it broke)."""

    def __init__(self, connection: Callable[[], psycopg.Connection]) -> None:
        self._connection = connection

    def catalog(self) -> PsycopgSession:
        return PsycopgSession(self._connection())

    def export(
        self, table: str, columns: Sequence[str], path: Path, *, prod_keys: ProdKeys | None = None,
        overrides: Mapping[str, Any] | None = None, report: EventSink | None = None,
        follow: FollowedFile | None = None, progress_every_s: float = DEFAULT_EVERY_S,
    ) -> ExportResult:
        return export_table(self._connection(), table, columns, path, prod_keys=prod_keys, overrides=overrides,
                            report=report, follow=follow, progress_every_s=progress_every_s)

    def stopper(self) -> ExportStopper:
        return _ConnectionStopper(self._connection())
