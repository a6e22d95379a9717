"""The reject file of a table: one JSON line per row prod refused, with its id, prod's reason and the row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from websync_dagster.core.errors import TableSyncError


class RejectFile:
    """The run's own reject file of a table (``stamp`` is the run id): created exclusively at the first
    rejected row, never another run's, and added to as each unit commits.

    ``with_content``: how many of the table's rejects are written with their row's content; beyond that (a
    prod refusing every row of a large delta), id and reason only, so that a unit's rejects never fill the
    memory; the file and the metadata say how many rows' content was left out."""

    def __init__(self, reject_dir: Path, table: str, stamp: str, *, with_content: int) -> None:
        self.table = table
        self.path = reject_dir / f"{table}_{stamp}.rejects.jsonl"
        self.with_content = with_content
        self.written = 0
        #: rejects written without their row's content (past ``with_content``)
        self.content_cut = 0

    @property
    def content_budget(self) -> int:
        """How many more rejects may come back with their row's content."""
        return max(self.with_content - (self.written - self.content_cut), 0)

    def add(self, rejects: list[dict[str, Any]]) -> None:
        if not rejects:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "a" if self.written else "x", encoding="utf-8") as out:
                for reject in rejects:
                    if reject.get("row") is None:
                        self.content_cut += 1
                        reject = {**reject, "row_cut": f"more than {self.with_content} rows of {self.table} "
                                  "were rejected in this run: only their id and reason are kept"}
                    out.write(json.dumps({"table": self.table, **reject}, ensure_ascii=False) + "\n")
        except FileExistsError:
            raise TableSyncError(self.table, f"{len(rejects)} rows were rejected but {self.path} already exists: it "
                                 "was left as it was and these rejects were not written (the inserted rows are "
                                 "committed)") from None
        self.written += len(rejects)
