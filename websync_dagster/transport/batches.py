"""A transaction's steps as few round trips as the protocol allows: consecutive statements and queries go to the
server as one query string (the simple-query protocol runs them in order, one result each), with ``BEGIN`` before
the first and ``COMMIT`` after the last; only a COPY needs its own exchange. A unit of the fast path is then three
round trips (the lock with BEGIN, the COPY, the counts with COMMIT) rather than seven, and a staged unit three
rather than about twenty: on a 40 ms link, most of a small unit's time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from websync_dagster.transport.base import CopyIn, Query, Statement, Step, as_json_rows


@dataclass(frozen=True)
class Batch:
    """Statements and queries sent as one query string: ``texts`` in order, ``steps[i]`` the step of
    ``texts[i + offset]`` (``offset``: 1 when the batch opens with BEGIN)."""

    texts: tuple[sql.Composable, ...]
    steps: tuple[Statement | Query, ...]
    offset: int


def batches(steps: Sequence[Step], *, commit: bool = True) -> list[Batch | CopyIn]:
    """The transaction's exchanges in order: a ``Batch`` for each run of statements and queries, each COPY alone;
    BEGIN opens the first batch and COMMIT closes the last (a batch of their own where a COPY is first or last).
    ``commit=False``: no COMMIT (the caller sends it, after looking at the results)."""
    out: list[Batch | CopyIn] = []
    run: list[Statement | Query] = []

    def flush(*, first: bool, last: bool) -> None:
        if not (run or first or (last and commit)):
            return
        texts = [sql.SQL("BEGIN")] if first else []
        texts += [as_json_rows(s.query) if isinstance(s, Query) else s.query for s in run]
        if last and commit:
            texts.append(sql.SQL("COMMIT"))
        out.append(Batch(tuple(texts), tuple(run), 1 if first else 0))
        run.clear()

    for step in steps:
        if isinstance(step, CopyIn):
            flush(first=not out, last=False)
            out.append(step)
        else:
            run.append(step)
    flush(first=not out, last=True)
    return out
