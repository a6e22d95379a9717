"""Errors the engine raises: each one is a single line naming what is wrong."""


def first_line(message: BaseException | str) -> str:
    """The first line of a message or an exception's (its type's name when it has none): what a user is shown."""
    text = str(message).strip()
    if text:
        return text.splitlines()[0]
    return type(message).__name__ if isinstance(message, BaseException) else ""


class SyncError(Exception):
    """A problem the user can act on; its message is one line, free of secrets."""

    #: what kind of problem it is, for a structured report (engine/events.py ``FailureReason``)
    kind = "error"


class ConfigError(SyncError):
    """Bad configuration: unknown table, bad URL, missing variable."""

    kind = "config"


class TableSyncError(SyncError):
    """A table could not be synced: the unit in flight was rolled back, the units committed before stay
    (the message says what prod kept)."""

    kind = "table"

    def __init__(self, table: str, cause: str) -> None:
        self.table = table
        self.cause = cause
        super().__init__(f"{table}: {cause}")
