"""What a table's load did, and how each committed unit's server counts add up into it."""

from __future__ import annotations

from dataclasses import dataclass, field

from websync_dagster.engine.load.rejects import RejectFile
from websync_dagster.engine.load.staged import StagedCounts

NOTHING_TO_SHIP = "nothing to ship"


@dataclass(kw_only=True)
class LoadResult:
    table: str
    mode: str = NOTHING_TO_SHIP  # or "direct copy", "staged"
    before: int = 0
    after: int = 0
    shipped: int = 0
    inserted: int = 0
    already_present: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # unique key name -> rows left out
    nulled: dict[str, int] = field(default_factory=dict)  # column -> references set to NULL
    rejected: int = 0
    reject_file: str | None = None
    #: the run's manifest (engine/run_files.py), once a unit of the table committed
    manifest_file: str | None = None
    #: rejected rows written to the reject file without their content (see REJECT_ROWS_WITH_CONTENT)
    reject_rows_cut: int = 0
    fallback_reason: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    wire_bytes: int | None = None  # sent over the link to the VPS, compressed (SSH transports)
    #: rows shipped that prod neither inserted, nor refused, nor already had: 0 unless something
    #: (a trigger, a rule) silently dropped them; from the server's own counts
    lost: int = 0
    #: transactions prod committed for the table (commit units, see engine/units.py)
    commits: int = 0
    #: rows of the committed units that prod inserted, refused, skipped or already had
    accounted: int = 0
    #: rows of the export that the committed units sent (the server's counts), to name a failed unit's rows
    sent: int = 0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def keep_only_inserted(self) -> None:
        """Before another attempt at the table: the rows earlier attempts refused, skipped or found present
        are not in prod, so the new attempt's export considers them again and counts them; only what the
        committed units inserted (and the references they nulled) stays counted here."""
        self.rejected, self.skipped, self.already_present, self.reject_rows_cut = 0, {}, 0, 0
        self.reject_file = None
        self.accounted = self.inserted
        self.sent = 0  # the new attempt's export holds only the rest

    def _add_counts(self, before: int | None, after: int) -> None:
        if before is not None:
            self.before = before
        self.after = after

    def add_copied(self, *, before: int | None, after: int, copied: int) -> None:
        """A unit the fast path committed; ``copied`` is the server's count, in which a row a trigger
        swallowed is not."""
        if self.mode != "staged":
            self.mode = "direct copy"
        self._add_counts(before, after)
        self.inserted += copied
        self.accounted += copied
        self.sent += copied

    def add_staged(self, unit: StagedCounts) -> None:
        """A unit the staged path committed (its rejects: ``add_reject_file`` once they are written)."""
        self.mode = "staged"
        self._add_counts(unit.before, unit.after)
        self.inserted += unit.inserted
        for name, n in unit.skipped.items():
            self.skipped[name] = self.skipped.get(name, 0) + n
        self.already_present += unit.already_present
        for column, n in unit.nulled.items():
            if n:
                self.nulled[column] = self.nulled.get(column, 0) + n
        self.rejected += len(unit.refused)
        self.accounted += unit.accounted
        self.sent += unit.staged

    def add_reject_file(self, rejects: RejectFile) -> None:
        if rejects.written:
            self.reject_file = str(rejects.path)
        self.reject_rows_cut = rejects.content_cut
