"""Turn engine errors into Dagster failures: one line, naming the table, with no secret in it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dagster import Failure

from websync_dagster.settings import Settings
from websync_dagster.sync.errors import SyncError


@contextlib.contextmanager
def as_failure(settings: Settings | None, table: str | None = None) -> Iterator[None]:
    redact = settings.redactor() if settings else (lambda text: text)
    try:
        yield
    except SyncError as exc:
        message = redact(str(exc))
        if table and not message.startswith(f"{table}:"):
            message = f"{table}: {message}"
        raise Failure(description=message, metadata={"table": table or ""}, allow_retries=False) from None
