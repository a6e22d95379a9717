"""The seam between the engine and prod: how statements, queries and COPY data reach it.

Every transport runs the same steps; the engine never knows whether prod is a local URL, a
port forwarded over SSH, or a ``psql`` process on the VPS.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql


@dataclass(frozen=True)
class Statement:
    """SQL run for its effect."""

    query: sql.Composable


@dataclass(frozen=True)
class Query:
    """A SELECT whose rows come back as a list of dicts (through JSON, the same on every transport)."""

    query: sql.Composable


@dataclass(frozen=True)
class CopyIn:
    """``COPY table (columns) FROM STDIN`` of a Postgres CSV with header, fed by ``source``.

    ``source`` is called once per attempt and yields bytes.
    """

    table: sql.Identifier
    columns: tuple[str, ...]
    source: Callable[[], Iterable[bytes]]

    @property
    def query(self) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
            self.table, sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        )


Step = Statement | Query | CopyIn


def as_json_rows(query: sql.Composable) -> sql.Composed:
    """Wrap a SELECT so that its whole result is one JSON array of objects."""
    return sql.SQL("SELECT coalesce(json_agg(row_to_json(q)), '[]'::json) AS rows FROM ({}) AS q").format(query)


class ProdSession(ABC):
    """An open connection to prod."""

    #: whether a failed COPY can be retried in another transaction on the same session
    supports_fast_path: bool = True
    #: COPY formats the session can feed from a Postgres CSV file
    name: str = "abstract"

    @abstractmethod
    def query(self, query: sql.Composable) -> list[dict[str, Any]]:
        """Run one read-only query and return its rows."""

    @abstractmethod
    def copy_out(self, query: sql.Composable) -> Iterator[bytes]:
        """Stream the output of ``COPY (...) TO STDOUT``."""

    @abstractmethod
    def run_transaction(self, steps: Sequence[Step]) -> list[list[dict[str, Any]]]:
        """Run the steps in one transaction; return, in order, the rows of each Query step and, for each
        CopyIn step, ``[{"rows": <rows the server copied>}]``.

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
