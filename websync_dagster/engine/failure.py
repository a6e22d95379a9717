"""What a table's failure is, told as what it is: prod's error (its message and SQLSTATE), the
environment's (a full disk, a lost link), or a bug in websync. Each is one line naming the table; the
original exception stays the cause (``raise ... from exc``), so that ``--debug`` and Dagster's step
failure show the whole chain.
"""

from __future__ import annotations

from websync_dagster.core.errors import SyncError, TableSyncError, first_line
from websync_dagster.core.redact import Redactor
from websync_dagster.engine.events import FailureReason
from websync_dagster.engine.run_files import ManifestUnwritable

#: exceptions that only a mistake in websync's own code raises (a missing key, a broken invariant, a wrong
#: type); errors from prod, dev, the disk or the link are psycopg.Error, OSError, EOFError, SyncError
BUG_TYPES = (LookupError, AssertionError, TypeError, AttributeError, NameError, ArithmeticError, ValueError)


class ExportFailed(TableSyncError):
    """Dev's side of a table failed (its COPY, the export file): prod was not the cause."""

    kind = "dev"


class InternalError(TableSyncError):
    """A bug in websync met by a table."""

    kind = "internal"


class UnitFailed(TableSyncError):
    """Prod did not take a commit unit (prod's error is the cause, with its SQLSTATE)."""

    kind = "prod"


class NotLoaded(TableSyncError):
    """A table not loaded because a table it references did not land."""

    kind = "blocked"


def sqlstate_of(exc: BaseException) -> str | None:
    """Prod's (or dev's) SQLSTATE of the first error in ``exc``'s chain of causes that has one."""
    current: BaseException | None = exc
    while current is not None:
        state = getattr(current, "sqlstate", None)
        if state:
            return str(state)
        current = current.__cause__
    return None


def failure_reason(exc: SyncError, table: str, redact: Redactor | None = None) -> FailureReason:
    """What stopped ``table``, structured: the kind of error, its line after the table's name (secrets
    removed) and the SQLSTATE when prod or dev gave one."""
    message = exc.cause if isinstance(exc, TableSyncError) and exc.table == table else str(exc)
    return FailureReason(exc.kind, (redact or Redactor())(message), sqlstate_of(exc))


def is_bug(exc: BaseException) -> bool:
    """Whether ``exc`` is a bug in websync rather than something prod, dev or the machine did."""
    return isinstance(exc, BUG_TYPES) and getattr(exc, "sqlstate", None) is None and not isinstance(exc, OSError)


def internal_error(table: str, exc: BaseException, redact: Redactor | None = None) -> InternalError:
    """``<table>: internal error: KeyError: 'x' (a bug in websync; --debug shows the traceback)``."""
    text = (redact or Redactor())(first_line(exc)) if str(exc).strip() else ""
    shown = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return InternalError(table, f"internal error: {shown} (a bug in websync; --debug shows the traceback)")


def reason(exc: BaseException) -> str:
    """The error's first line, with prod's SQLSTATE when it has one (``... (SQLSTATE XX000)``)."""
    state = getattr(exc, "sqlstate", None)
    text = first_line(exc)
    return f"{text} (SQLSTATE {state})" if state else text


def link_reason(exc: BaseException, redact: Redactor | None = None) -> str:
    """What broke the link, for a retry's line: the first error in ``exc``'s chain that is not websync's own
    line (prod's or dev's message and SQLSTATE), else ``exc``'s own."""
    current: BaseException | None = exc
    while current is not None and isinstance(current, SyncError) and current.__cause__ is not None:
        current = current.__cause__
    if current is None or isinstance(current, SyncError):
        return (redact or Redactor())(exc.cause if isinstance(exc, TableSyncError) else str(exc))
    return (redact or Redactor())(reason(current))


def unit_failure(table: str, exc: BaseException, *, first_row: int, last_row: int | None,
                 committed_rows: int, redact: Redactor | None = None) -> TableSyncError:
    """A commit unit prod did not take: its rows, prod's reason, and what the units before it kept."""
    if is_bug(exc):
        return internal_error(table, exc, redact)
    rows = f"rows {first_row}-{last_row}" if last_row is not None and last_row >= first_row else \
        f"rows from {first_row}"
    if isinstance(exc, ManifestUnwritable):
        return UnitFailed(table, f"{exc}; the unit held {rows} of the delta ({committed_rows} rows committed before "
                                 "stay)")
    return UnitFailed(
        table, f"load into prod failed: {(redact or Redactor())(reason(exc))}; the unit in flight ({rows} of the "
               f"delta) was rolled back ({committed_rows} rows committed before stay)")
