"""What a sync would do, reading both sides and writing nothing to prod (``websync sync --dry-run``).

Per table: the rows prod lacks (the same delta a sync exports, computed by dev's planner from prod's
keys), the rows left out because prod already has them (by id or another unique key), the bytes of
CSV that would be shipped and what they compress to on an SSH link, and what can be known of rows
prod would refuse without writing: a planning problem that would stop the table (a prod-only NOT NULL
column without default, a table missing on one side), type differences, and tables that would not be
loaded because a table they depend on would not land. Refusals that only prod's constraints and
triggers can tell (CHECK lists, triggers, missing references) show only in a real sync.

The delta is written to a temporary file (to count its bytes), outside the export dir, and removed.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from websync_dagster.core.errors import TableSyncError
from websync_dagster.core.settings import Settings
from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.export_load import run_export
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.update.candidates import find_newer
from websync_dagster.engine.update.change_report import change_report

#: zlib level of the SSH transports' compression (what the estimate of bytes on the link uses)
LINK_ZLIB_LEVEL = 1


@dataclass
class DryRunTable:
    table: str
    would_insert: int = 0
    already_present: int = 0
    skipped_by_key: dict[str, int] = field(default_factory=dict)
    #: a table opted in to newer-wins updates: rows dev holds newer (would be updated), rows prod holds newer (kept),
    #: and per column how many of the rows to update change it (engine/update/change_report.py); None otherwise
    would_update: int | None = None
    prod_newer_kept: int | None = None
    change_report: dict[str, Any] | None = None
    bytes: int = 0
    bytes_compressed: int = 0
    would_fail: str | None = None
    type_mismatches: list[str] = field(default_factory=list)
    dev_only_columns: list[str] = field(default_factory=list)
    prod_only_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compressed_size(path: Path, level: int = LINK_ZLIB_LEVEL) -> int:
    """Bytes of ``path`` once compressed as the SSH link compresses it."""
    compressor, size = zlib.compressobj(level), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


def dry_run(settings: Settings, tables: Sequence[str] | None = None) -> list[DryRunTable]:
    """One ``DryRunTable`` per table of ``tables`` (default: the settings' tables), in FK order."""
    wanted = list(tables or settings.tables)
    out: list[DryRunTable] = []
    not_landing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="websync-dry-run-") as scratch, \
            SyncContext(settings.model_copy(update={"export_dir": Path(scratch)})) as ctx:
        run_id = new_run_id()
        for table in [t for t in settings.tables if t in wanted]:
            row = DryRunTable(table)
            out.append(row)
            try:
                plan = ctx.plan(table)
            except TableSyncError as exc:
                row.would_fail = exc.cause
                not_landing.append(table)
                continue
            row.type_mismatches = [str(m) for m in plan.type_mismatches]
            row.dev_only_columns, row.prod_only_columns = list(plan.dev_only), list(plan.prod_only)
            row.warnings = list(plan.warnings)
            _fill(row, run_export(ctx, table, scope="delta", run_id=run_id))
            if plan.version is not None:
                newer = find_newer(ctx.dev, ctx.prod, plan)
                row.would_update, row.prod_newer_kept = len(newer.ids), newer.prod_newer
                row.change_report = change_report(ctx.dev, ctx.prod, plan, newer.ids)
            blocked = [d for d in DECLARED_DEPS.get(table, ()) if d in not_landing]
            if blocked:
                row.would_fail = f"not loaded: {', '.join(blocked)} would not land in prod"
                not_landing.append(table)
    return out


def _fill(row: DryRunTable, export: ExportResult) -> None:
    row.would_insert, row.already_present = export.rows, export.already_in_prod
    row.skipped_by_key = dict(export.clashes)
    row.bytes = export.bytes if export.rows else 0
    row.bytes_compressed = compressed_size(Path(export.path)) if export.rows else 0
