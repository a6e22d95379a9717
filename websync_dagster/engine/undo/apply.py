"""Undo of one run, table by table (see engine/undo/__init__.py)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from websync_dagster.core.errors import SyncError, TableSyncError
from websync_dagster.engine.catalog import TableInfo, read_catalog
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.events import EventSink, Note
from websync_dagster.engine.order import fk_order
from websync_dagster.engine.run_files import (
    RunFiles,
    before_path,
    new_unit_id,
    read_before_images,
    read_manifest,
    rows_to_undo,
    unrecorded_units,
)
from websync_dagster.engine.undo.decide import Action, Entry, decide
from websync_dagster.engine.undo.steps import (
    UNDO_COLUMNS,
    Reference,
    references_query,
    referencing,
    rows_now,
    undo_steps,
)
from websync_dagster.transport.base import Results

#: rows of one undo unit
UNIT_ROWS = 500
#: what the undo's manifest says it did, by action
_DONE_AS = {"delete": "deleted", "restore": "updated", "insert": "inserted"}


@dataclass
class UndoTable:
    """What undo did (or, dry run, would do) to one table; ``left``: rows left alone, id -> why."""

    table: str
    deleted: int = 0
    restored: int = 0
    inserted: int = 0
    left: dict[str, str] = field(default_factory=dict)
    before_image_file: str | None = None
    dry_run: bool = False
    #: the run's units of this table whose end its manifest does not hold (engine/run_files.py): what each did and
    #: where its rows are; their rows may be in prod without being in the manifest, and are not undone
    unrecorded_units: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The table's figures, the reasons and each row left alone (``left``: id -> why): ``--json``, the op's
        output; ``text_row`` makes a table row of it."""
        verb = "would " if self.dry_run else ""
        return {"table": self.table, f"{verb}delete": self.deleted, f"{verb}restore": self.restored,
                f"{verb}insert": self.inserted, "left alone": len(self.left),
                "reasons": sorted(set(self.left.values())), "left": dict(self.left),
                "unrecorded units": list(self.unrecorded_units)}


def text_row(row: dict[str, object]) -> dict[str, object]:
    """An ``UndoTable.to_dict()`` as a row of the printed table: the reasons in one cell, the ids left out."""
    reasons = row.get("reasons") or []
    unrecorded = row.get("unrecorded units") or []
    return {**{k: v for k, v in row.items() if k not in ("left", "unrecorded units")},
            "reasons": "; ".join(map(str, reasons)), "unrecorded units": len(unrecorded)}


def _chunks(entries: Sequence[Entry], size: int) -> Iterator[Sequence[Entry]]:
    for start in range(0, len(entries), size):
        yield entries[start:start + size]


def _actions_csv(actions: Sequence[Action]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(UNDO_COLUMNS)
    writer.writerows([a.action, a.id, a.expect, json.dumps(a.image, ensure_ascii=False) if a.image else None]
                     for a in actions)
    return out.getvalue().encode("utf-8")


def undo_run(ctx: SyncContext, run_id: str, *, undo_run_id: str, dry_run: bool = False,
             report: EventSink | None = None) -> list[UndoTable]:
    """Take back what run ``run_id`` did to prod (dry run: say what would be done, write nothing). Deletes go in
    reverse foreign-key order, restores and inserts in foreign-key order; a table's problem stops that table only
    (its error is raised after the others are done)."""
    export_dir = ctx.settings.export_dir
    by_table: dict[str, list[Entry]] = {}
    lines = read_manifest(export_dir, run_id)
    to_undo = rows_to_undo(lines)
    for line in to_undo.lines:
        entry = Entry.of(line)
        by_table.setdefault(entry.table, []).append(entry)
    unrecorded = unrecorded_units(lines)
    for table in unrecorded:
        by_table.setdefault(table, [])
    catalog = read_catalog(ctx.prod, list(by_table), side="prod", require_all=False)
    missing = [t for t in by_table if t not in catalog]
    if missing:
        raise SyncError(f"undo of run {run_id}: prod has no table {', '.join(missing)}")
    order = fk_order(catalog)
    files = None if dry_run else ctx.run_files(undo_run_id)
    if files is not None:
        files.start()  # an undo that changes nothing still has a manifest: undoing it is then nothing to do
    results = {t: UndoTable(t, dry_run=dry_run, unrecorded_units=[_unit_said(u, export_dir, run_id)
                                                                    for u in unrecorded.get(t, [])])
               for t in order}
    errors: list[TableSyncError] = []
    phases = [(reversed(order), ("inserted",)), (order, ("updated", "deleted"))]
    #: table -> ids this undo deletes (a dry run: would delete); a reference from one of them does not count
    deleting: dict[str, set[str]] = {}
    for tables, ops in phases:
        for table in list(tables):
            entries = [e for e in by_table[table] if e.op in ops]
            if not entries or any(e.table == table for e in errors):
                continue
            try:
                images = read_before_images(export_dir, table, run_id)
                refs = [Reference(**r, key=catalog[r["table"]].primary_key[0] if r["table"] in catalog else None)
                        for r in ctx.prod.query(references_query(catalog[table]))]
                for unit in _chunks(entries, UNIT_ROWS):
                    _undo_unit(ctx, catalog[table], refs, unit, images, results[table], files, deleting,
                               to_undo.unsure.get(table, set()))
            except SyncError as exc:
                errors.append(exc if isinstance(exc, TableSyncError) else TableSyncError(table, str(exc)))
            except Exception as exc:  # prod refused: this table stops, the others go on
                errors.append(TableSyncError(table, f"undo failed: {ctx.settings.redactor()(str(exc))}; the unit in "
                                             "flight was rolled back"))
                errors[-1].__cause__ = exc
    for result in results.values():
        if files is not None:
            result.before_image_file = files.before_file(result.table)
        if report is not None:
            verb = "would be " if dry_run else ""
            report(Note(f"undo of {run_id}: {result.table}: {result.deleted} rows {verb}deleted, {result.restored} "
                        f"{verb}restored, {result.inserted} {verb}inserted again, {len(result.left)} left alone"
                        + (f" ({'; '.join(sorted(set(result.left.values())))})" if result.left else "")
                        + "".join(f"; not undone: {said}" for said in result.unrecorded_units)))
    if errors:
        raise errors[0]
    return [results[t] for t in order]


def _unit_said(line: dict, export_dir: Path, run_id: str) -> str:
    """What a unit the manifest has no end for did, and where its rows are, in one phrase."""
    if line.get("does") == "updated":
        where = (f"its {len(line.get('ids') or [])} rows' before-images are in "
                 f"{before_path(export_dir, line['table'], run_id)}")
    else:
        where = (f"its rows start at row {line.get('export_row', '?')} of the run's export of {line['table']} "
                 f"(in {export_dir}; after a retry, that attempt's export)")
    return (f"a unit that {line.get('does', 'changed')} rows may have committed without its rows in the manifest "
            f"(the run stopped, or lost its link, while prod committed it); {where}")


def _undo_unit(ctx: SyncContext, info: TableInfo, refs: list[Reference], entries: Sequence[Entry],
               images: dict, result: UndoTable, files: RunFiles | None, deleting: dict[str, set[str]],
               unsure: set[str]) -> None:
    ids = [e.id for e in entries]
    prod = ctx.prod
    now = {r["id"]: r for r in prod.run_transaction(rows_now(info, ids)).rows("now")}
    found: list[dict] = []
    if refs and any(e.op == "inserted" for e in entries):
        found = [r for rows in prod.run_transaction(referencing(info, refs, ids)).values() for r in rows]
    hashes = {i: (r["hash"], r["xmin"]) for i, r in now.items()}
    # a row is deleted only when every row referencing it goes too: this unit's rows referencing each other (a
    # document and the one it supersedes) go together, down to the rows no staying row references
    going = {e.id for e in entries if e.op == "inserted"}
    while True:
        staying = [r for r in found if r["row"] not in deleting.get(r["by"], set())
                   and not (r["by"] == info.name and r["row"] in going)]
        decisions = decide(entries, hashes, images, {r["id"]: r["by"] for r in staying}, unsure)
        deleted = {a.id for a in decisions.actions if a.action == "delete"}
        if deleted == going:
            break
        going = deleted
    result.left.update(decisions.left)
    deleting.setdefault(info.name, set()).update(a.id for a in decisions.actions if a.action == "delete")
    if files is None:
        for action in decisions.actions:
            _count(result, action.action)
        return
    if not decisions.actions:
        return
    files.keep_before_images(info.name, [now[a.id] for a in decisions.actions if a.id in now])
    data = _actions_csv(decisions.actions)
    unit = new_unit_id()

    def lines(results: Results) -> dict[str, list[dict]]:
        """What the undo's own undo needs (see run_files.py), by op."""
        by_op: dict[str, list[dict]] = {}
        for row in results.rows("undone"):
            before = now[row["id"]]["hash"] if row["id"] in now else None
            line = {"delete": {"id": row["id"], "before": before},
                    "restore": {"id": row["id"], "hash": row["hash"], "before": before},
                    "insert": {"id": row["id"], "xmin": row["hash"]}}[row["action"]]
            by_op.setdefault(_DONE_AS[row["action"]], []).append(line)
        return by_op

    steps = undo_steps(info, refs, lambda: [data])
    if prod.holds_commit:  # on disk before the unit commits
        results = prod.run_transaction(steps, lambda held: files.committing(info.name, unit, lines(held)))
        files.committed(info.name, unit)
    else:  # sent whole: its lines once prod answered
        results = prod.run_transaction(steps)
        for op, rows in lines(results).items():
            files.record(info.name, op, rows)
    done = results.rows("undone")
    for row in done:
        _count(result, row["action"])
    acted = {r["id"] for r in done}
    for action in decisions.actions:
        if action.id not in acted:
            result.left[action.id] = "changed in prod during the undo (or referenced by a new row)"


def _count(result: UndoTable, action: str) -> None:
    if action == "delete":
        result.deleted += 1
    elif action == "restore":
        result.restored += 1
    else:
        result.inserted += 1
