"""Errors the engine raises: each one is a single line naming what is wrong."""


class SyncError(Exception):
    """A problem the user can act on; its message is one line, free of secrets."""


class ConfigError(SyncError):
    """Bad configuration: unknown table, bad URL, missing variable."""


class TableSyncError(SyncError):
    """A table could not be synced; prod's copy of that table is as it was before."""

    def __init__(self, table: str, cause: str) -> None:
        self.table = table
        self.cause = cause
        super().__init__(f"{table}: {cause}")
