"""Turn engine errors into Dagster failures: one line, naming the table, with no secret in it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


@contextlib.contextmanager
def as_failure(websync: WebsyncResource, table: str | None = None) -> Iterator[None]:
    try:
        yield
    except SyncError as exc:
        raise Failure(description=redacted(websync, exc, table), metadata={"table": table or ""},
                      allow_retries=False) from None
