"""Turn engine errors into Dagster failures: one line, naming the table, with no secret in it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from dagster import Failure

from websync_dagster.core.errors import SyncError
from websync_dagster.core.redact import Redactor
from websync_dagster.defs.resources import WebsyncResource


def redacted(websync: WebsyncResource, exc: SyncError, table: str | None = None) -> str:
    """The error's one line, secrets removed, starting with the table's name."""
    try:
        redact = websync.settings().redactor()
    except SyncError:
        redact = Redactor()
    message = redact(str(exc))
    if table and not message.startswith(f"{table}:"):
        message = f"{table}: {message}"
    return message


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
        raise Failure(description=redacted(websync, exc, table), metadata={"table": table or ""},
                      allow_retries=False) from exc
