"""Turn engine errors into Dagster failures: one line per problem, naming the table, with no secret in it.
The problems are also the failure's metadata (``errors``: ``[{table, kind, error, sqlstate}]``), which the
CLI reports from, rather than reading the lines back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import Failure, MetadataValue

from websync_dagster.core.errors import SyncError, TableSyncError
from websync_dagster.core.redact import Redactor
from websync_dagster.defs.resources import WebsyncResource
from websync_dagster.engine.events import FailureReason
from websync_dagster.engine.failure import failure_reason, sqlstate_of

#: the step failure's metadata key holding its problems
ERRORS_KEY = "errors"
#: a problem: ``{"table": str | None, "kind": str, "error": str, "sqlstate": str | None}``
Problem = dict[str, Any]


def _redactor(websync: WebsyncResource) -> Redactor:
    try:
        return websync.settings().redactor()
    except SyncError:
        return Redactor()


def problem(websync: WebsyncResource, exc: SyncError, table: str | None = None) -> Problem:
    """``exc`` as a problem of ``table`` (by default the table a TableSyncError names), secrets removed."""
    redact = _redactor(websync)
    table = table or (exc.table if isinstance(exc, TableSyncError) else None)
    if table is None:
        reason = FailureReason(exc.kind, redact(str(exc)), sqlstate_of(exc))
    else:
        reason = failure_reason(exc, table, redact)
    return {"table": table, **reason.to_dict()}


def problem_line(p: Problem) -> str:
    """The problem's one line: ``<table>: <error>``, or the error alone when it is no table's."""
    return f"{p['table']}: {p['error']}" if p["table"] else p["error"]


def failure(problems: Sequence[Problem]) -> Failure:
    """A step failure of one line per problem, the problems in its metadata."""
    return Failure(description="\n".join(problem_line(p) for p in problems),
                   metadata={ERRORS_KEY: MetadataValue.json(list(problems))}, allow_retries=False)


def first_cause(errors: Sequence[BaseException]) -> BaseException | None:
    """The error a step failure carries as its cause (its chain is what ``--debug`` and the UI show): the
    first table's whose chain holds more than websync's own line (a bug, prod's error), else the first."""
    for error in errors:
        if error.__cause__ is not None:
            return error
    return errors[0] if errors else None


@contextlib.contextmanager
def as_failure(websync: WebsyncResource, table: str | None = None) -> Iterator[None]:
    """A SyncError becomes a step failure of one line; the error stays its cause."""
    try:
        yield
    except SyncError as exc:
        raise failure([problem(websync, exc, table)]) from exc
