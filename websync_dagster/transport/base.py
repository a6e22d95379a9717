"""The seam between the engine and prod: how statements, queries and COPY data reach it.

Every transport runs the same steps; the engine never knows whether prod is a local URL, a
port forwarded over SSH, or a ``psql`` process on the VPS. Each step that returns something has a
name, and a transaction's results are read by that name (``Results``), on every transport.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Statement:
    """SQL run for its effect."""

    query: sql.Composable


@dataclass(frozen=True)
class Query:
    """A SELECT whose rows come back, under ``name``, as a list of dicts (through JSON, the same on every
    transport)."""

    name: str
    query: sql.Composable


@dataclass(frozen=True)
class CopyIn:
    """``COPY table (columns) FROM STDIN`` of a Postgres CSV with header, fed by ``source``.

    ``source`` is called once per attempt and yields bytes. Its result, under ``name``, is
    ``[{"rows": <rows the server copied>}]``.
    """

    name: str
    table: sql.Identifier
    columns: tuple[str, ...]
    source: Callable[[], Iterable[bytes]]

    @property
    def query(self) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
            self.table, sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        )


Step = Statement | Query | CopyIn
#: called with a transaction's results once prod has run all its steps, before COMMIT is sent (``run_transaction``)
BeforeCommit = Callable[["Results"], None]


class Results(dict[str, list[dict[str, Any]]]):
    """What a transaction's named steps returned, by step name."""

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of the step ``name``; a step that did not run is a programming error, said as such."""
        if name not in self:
            raise KeyError(f"no result named {name!r} in this transaction (steps: {', '.join(self)})")
        return self[name]

    def value(self, name: str, column: str) -> Any:
        """The one value of a step that returns one row (a count, a copied-rows figure)."""
        rows = self.rows(name)
        if len(rows) != 1:
            raise ValueError(f"step {name!r} returned {len(rows)} rows, not one")
        return rows[0][column]


_STEP_NAME = re.compile(r"^\w+$")


def check_step_names(steps: Sequence[Step]) -> None:
    """Each named step's name is a word (it travels in psql's output) and is used once: a result is never
    silently replaced by another's."""
    names = [s.name for s in steps if not isinstance(s, Statement)]
    bad = [n for n in names if not _STEP_NAME.match(n)]
    if bad:
        raise ValueError(f"step names must be words (letters, digits, _): {', '.join(map(repr, bad))}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"step names used twice in one transaction: {', '.join(twice)}")


def as_json_rows(query: sql.Composable) -> sql.Composed:
    """Wrap a SELECT so that its whole result is one JSON array of objects."""
    return sql.SQL("SELECT coalesce(json_agg(row_to_json(q)), '[]'::json) AS rows FROM ({}) AS q").format(query)


#: SQLSTATEs of a session prod ended: connection exceptions (08), admin/crash shutdown, cannot connect now,
#: and the idle-in-transaction timeout (the client was paused: a new session can do the work)
_LOST_STATES = ("57P01", "57P02", "57P03", "25P03")


def session_application_name() -> str:
    """A new session's ``application_name``: ``websync-`` and 8 random hex digits."""
    return f"websync-{secrets.token_hex(4)}"


def lock_timeout_ms(wait_s: float) -> int:
    """``lock_timeout`` of websync's sessions for WEBSYNC_WAIT_S: 0 there means "do not wait", which Postgres
    spells 1 ms (its 0 is "wait for ever")."""
    return max(int(wait_s * 1000), 1)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it, and so on (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_lost_link(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.Error):  # 25P03 is an InternalError to psycopg, the others OperationalErrors
        state = exc.sqlstate
        if state is None:
            return isinstance(exc, psycopg.OperationalError)  # the connection closed under the client
        return state.startswith("08") or state in _LOST_STATES
    return isinstance(exc, ConnectionError | EOFError | TimeoutError)


class ProdSession(ABC):
    """An open connection to prod."""

    #: whether a failed COPY can be retried in another transaction on the same session
    supports_fast_path: bool = True
    #: COPY formats the session can feed from a Postgres CSV file
    name: str = "abstract"
    #: prod's ``application_name`` of this session's backends (unique per session): how a second session
    #: finds which backends block this one (engine/lock_wait.py)
    application_name: str = "websync"

    @abstractmethod
    def query(self, query: sql.Composable) -> list[dict[str, Any]]:
        """Run one read-only query and return its rows."""

    @abstractmethod
    def copy_out(self, query: sql.Composable) -> Iterator[bytes]:
        """Stream the output of ``COPY (...) TO STDOUT``."""

    def connection_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` (or what caused it) says the link to prod broke, rather than prod refusing the
        work: a new session may then complete it. Interruptions are never a lost link."""
        return any(_is_lost_link(e) for e in causes(exc))

    #: whether ``run_transaction`` can hold a transaction open for ``before_commit`` (ssh_psql with a psql per
    #: transaction cannot: its script is sent whole)
    holds_commit: bool = True

    @abstractmethod
    def run_transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> Results:
        """Run the steps in one transaction; return the rows of each Query step and, for each CopyIn
        step, ``[{"rows": <rows the server copied>}]``, under the step's name.

        ``before_commit`` (only where ``holds_commit``): called with those results once prod has run every step,
        before COMMIT is sent; if it raises, the transaction is rolled back. What it writes on this side (the
        run's manifest) is then on disk before prod can have committed: one round trip more.

        Any error rolls the whole transaction back and propagates.
        """


class ProdTransport(ABC):
    """How prod is reached; ``session()`` opens (and closes) the connection."""

    name: str = "abstract"

    @abstractmethod
    def describe(self) -> str:
        """Where prod is, for logs and metadata (never a secret)."""

    @abstractmethod
    @contextlib.contextmanager
    def session(self) -> Iterator[ProdSession]:
        """An open session to prod."""

    def wire_bytes_sent(self) -> int | None:
        """Bytes the last session sent over the network link to the VPS (None when not measured)."""
        return None
