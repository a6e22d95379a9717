"""What the engine tells while it works, as typed events: a transfer's progress, a table's turn (started,
exported, landed, failed with a structured reason), a wait for a lock, a reconnection, a note.

Each event renders its own line (``text()``), the one Dagster's log records and a plain terminal shows;
a reader that wants more (the CLI's progress bars, a failure report) reads the fields, never the line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

#: how loud an event is in a log: ``debug`` lines are for Dagster's log only, ``error`` is a table's failure
Level = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class TransferProgress:
    """Bytes of a table's export (dev -> file) or load (file -> prod) so far; ``total_bytes`` 0 when unknown.
    ``estimated``: the totals are dev's estimate (shown with ``~``), not the size of a finished file."""

    level: ClassVar[Level] = "info"
    table: str
    phase: Literal["export", "load"]
    done_bytes: int
    total_bytes: int
    total_rows: int
    estimated: bool
    elapsed_s: float

    @property
    def label(self) -> str:
        return f"{self.table} {self.phase}"

    @property
    def done_rows(self) -> int:
        """Rows sent so far, pro rata of the bytes (0 when the total is unknown)."""
        return round(self.total_rows * self.done_bytes / self.total_bytes) if self.total_bytes else 0

    def text(self) -> str:
        mb, rate = self.done_bytes / 1e6, self.done_bytes / 1e6 / max(self.elapsed_s, 1e-9)
        if self.total_bytes:
            about = "~" if self.estimated else ""
            return (f"{self.label}: {mb:.1f} of {about}{self.total_bytes / 1e6:.1f} MB (~{self.done_rows} of "
                    f"{about}{self.total_rows} rows), {rate:.1f} MB/s")
        return f"{self.label}: {mb:.1f} MB, {rate:.1f} MB/s"


@dataclass(frozen=True)
class TableStarted:
    level: ClassVar[Level] = "debug"
    table: str
    export: bool
    load: bool

    def text(self) -> str:
        what = " and ".join(w for w, on in (("export", self.export), ("load", self.load)) if on)
        return f"{self.table}: started ({what})"


@dataclass(frozen=True)
class TableExported:
    """A table exported and not loaded (the offline export, or an export selected without its load)."""

    level: ClassVar[Level] = "info"
    table: str
    rows: int
    scope: str
    path: str

    def text(self) -> str:
        return f"{self.table}: exported {self.rows} rows ({self.scope}) to {self.path}"


@dataclass(frozen=True)
class TableReexported:
    """A load run without its export selected: the delta was exported again, so that the counts are prod's."""

    level: ClassVar[Level] = "info"
    table: str
    path: str

    def text(self) -> str:
        return (f"{self.table}: {self.table}/export was not selected: exported again the rows prod lacks now "
                f"({self.path}), since an export recorded earlier may predate prod's current state and the counts "
                f"must be prod's")


@dataclass(frozen=True)
class TableWarning:
    level: ClassVar[Level] = "warning"
    table: str
    message: str

    def text(self) -> str:
        return f"{self.table}: {self.message}"


@dataclass(frozen=True)
class TableLanded:
    """A table loaded into prod, with what happened to the rows shipped."""

    level: ClassVar[Level] = "info"
    table: str
    exported_rows: int
    prod_before: int
    prod_after: int
    inserted: int
    already_present: int
    skipped: int
    rejected: int
    mode: str
    seconds: float

    def text(self) -> str:
        return (f"{self.table}: exported {self.exported_rows} rows; prod {self.prod_before} -> {self.prod_after} rows, "
                f"{self.inserted} inserted, {self.already_present} already present, {self.skipped} skipped, "
                f"{self.rejected} rejected ({self.mode}, {self.seconds} s)")


#: what kind of problem stopped a table: ``prod`` (prod refused a unit: ``sqlstate`` says why), ``dev`` (the
#: export), ``lock`` (a lock wait reached WEBSYNC_WAIT_S), ``blocked`` (a table it references did not land),
#: ``internal`` (a bug in websync), ``table`` (any other problem of the table: its plan, its schema),
#: ``config``, ``error`` (anything else websync could name)
FailureKind = Literal["prod", "dev", "lock", "blocked", "internal", "table", "config", "error"]


@dataclass(frozen=True)
class FailureReason:
    """Why a table stopped: ``message`` is the line a user is shown after the table's name (no secret)."""

    kind: FailureKind | str
    message: str
    sqlstate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "error": self.message, "sqlstate": self.sqlstate}


@dataclass(frozen=True)
class TableFailed:
    level: ClassVar[Level] = "error"
    table: str
    reason: FailureReason

    def text(self) -> str:
        return f"{self.table}: {self.reason.message}"


@dataclass(frozen=True)
class LockHolder:
    """A prod backend that holds a lock websync waits for."""

    pid: int
    application: str
    user: str
    since: str
    state: str
    query: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LockHolder:
        return cls(row["pid"], row["application"], row["usename"], row["since"], row["state"], row["query"])

    def describe(self) -> str:
        app = f"application {self.application!r}" if self.application else "no application_name"
        doing = f"{self.state}: {self.query!r}" if self.query else self.state or "no query shown"
        return f"pid {self.pid} ({app}, user {self.user or '?'}, since {self.since}, {doing})"


@dataclass(frozen=True)
class LockWaiting:
    """A table's commit unit waits for locks these prod sessions hold; prod ends the wait after ``wait_s``."""

    level: ClassVar[Level] = "info"
    table: str
    holders: tuple[LockHolder, ...]
    wait_s: float

    def text(self) -> str:
        return (f"{self.table}: waiting for a lock on prod held by {'; '.join(h.describe() for h in self.holders)}; "
                f"giving up after {self.wait_s:g} s (WEBSYNC_WAIT_S)")


@dataclass(frozen=True)
class Reconnecting:
    """The link to ``side`` broke mid-table: prod rolled back the unit in flight, the run tries again."""

    level: ClassVar[Level] = "info"
    table: str
    side: Literal["dev", "prod"]
    reason: str
    committed_rows: int
    pause_s: float
    attempt: int
    attempts: int

    def text(self) -> str:
        return (f"{self.table}: the link to {self.side} broke ({self.reason}); prod rolled back the unit in flight "
                f"({self.committed_rows} rows committed before stay); reconnecting in {self.pause_s:g} s "
                f"(retry {self.attempt} of {self.attempts})")


@dataclass(frozen=True)
class Note:
    level: ClassVar[Level] = "info"
    message: str

    def text(self) -> str:
        return self.message


Event = (TransferProgress | TableStarted | TableExported | TableReexported | TableWarning | TableLanded | TableFailed
         | LockWaiting | Reconnecting | Note)
#: where the engine sends its events (Dagster's log, a test's list, the CLI's display)
EventSink = Callable[[Event], None]
