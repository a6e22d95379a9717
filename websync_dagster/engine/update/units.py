"""The update path's unit loop: the rows dev holds newer (update/candidates.py), sent in units of ``UNIT_ROWS``;
per unit, prod's before-images read and fsynced (run_files.py), then one transaction (update/steps.py), then
the manifest. A row prod changed between its before-image and the unit is left as prod has it (the unit
updates a row only while its hash is the image's), and counted; the next run looks at it again."""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from websync_dagster.engine.export import select_list
from websync_dagster.engine.load.rejects import RejectFile
from websync_dagster.engine.lock_wait import LockWatch
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.row_image import key_array
from websync_dagster.engine.run_files import RunFiles, new_unit_id
from websync_dagster.engine.update.candidates import find_newer
from websync_dagster.engine.update.change_report import ChangeCounts, dev_images, reported_columns
from websync_dagster.engine.update.steps import before_images, update_steps
from websync_dagster.transport.base import ProdSession, Results

#: rows of one update unit (a web page is ~10 kB: a unit is a few MB on the link)
UNIT_ROWS = 500
#: SQLSTATE of a unique violation: an updated row that would clash with another prod row on another key
_UNIQUE_VIOLATION = "23505"


@dataclass(kw_only=True)
class UpdateResult:
    """What the update path did to one table."""

    table: str
    version: str
    #: rows dev holds with a newer version than prod's
    newer_in_dev: int = 0
    updated: int = 0
    #: rows prod holds with a newer version than dev's: never touched
    prod_newer_kept: int = 0
    #: newer in dev but left as prod has it: prod changed the row since its before-image (the next run looks again)
    left_unchanged: int = 0
    #: rows to update that prod neither updated, nor refused, nor changed itself (a trigger or rule swallowed the
    #: update): 0 unless something silently dropped it; the blocking check fails on it
    lost: int = 0
    lost_ids: list[str] = field(default_factory=list)
    rejected: int = 0
    #: unique key name -> rows not updated because the update would clash there with another prod row
    skipped: dict[str, int] = field(default_factory=dict)
    reject_file: str | None = None
    before_image_file: str | None = None
    #: per column, how many of the updated rows it changed (update/change_report.py)
    changes: ChangeCounts = field(default_factory=ChangeCounts)
    commits: int = 0
    bytes: int = 0
    seconds: float = 0.0


def _dev_rows(dev: psycopg.Connection, plan: TablePlan, ids: Sequence[str]) -> bytes:
    """Dev's rows of ``ids``, as the export writes them (shipped columns, the table's overrides), CSV with header."""
    key_type = plan.dev.column(plan.key).type if plan.dev is not None else plan.prod.column(plan.key).type
    query = sql.SQL("COPY (SELECT {} FROM {} AS t WHERE t.{} = ANY({}) ORDER BY t.{}) TO STDOUT "
                    "(FORMAT csv, HEADER true)").format(
        select_list(plan.shipped, plan.overrides), sql.Identifier(plan.table), sql.Identifier(plan.key),
        key_array(ids, key_type), sql.Identifier(plan.key))
    with dev.cursor() as cur, cur.copy(query) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def _expected_csv(images: Sequence[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "hash"])
    writer.writerows([image["id"], image["hash"]] for image in images)
    return out.getvalue().encode("utf-8")


def _with_before(updated: Sequence[dict], hashes: dict[str, str]) -> list[dict]:
    """The manifest's lines of updated rows: each with its hash as the unit left it and its before-image's."""
    return [{**u, "before": hashes.get(u["id"])} for u in updated]


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _explain(session: ProdSession, plan: TablePlan, ids: Sequence[str], hashes: dict[str, str],
             result: UpdateResult) -> None:
    """The rows of a unit it did not update, nor refused: prod changed or deleted them since their before-image (left
    as prod has them), or else the update was swallowed (``lost``). Read only for those rows, after the commit."""
    if not ids:
        return
    now = {r["id"]: r["hash"] for r in session.run_transaction(before_images(plan, ids)).rows("before")}
    for row_id in ids:
        if row_id not in hashes or now.get(row_id) != hashes[row_id]:  # gone from prod, or changed there
            result.left_unchanged += 1
        else:
            result.lost += 1
            result.lost_ids.append(row_id)


def update_newer(dev: psycopg.Connection, session: ProdSession, plan: TablePlan, files: RunFiles,
                 rejects: RejectFile, *, watch: LockWatch | None = None,
                 into: UpdateResult | None = None) -> UpdateResult:
    """Update in prod the rows of ``plan``'s table that dev holds newer; ``into``: an earlier attempt's figures."""
    started = time.perf_counter()
    result = into or UpdateResult(table=plan.table, version=plan.version or "")
    newer = find_newer(dev, session, plan)
    result.prod_newer_kept = newer.prod_newer
    result.newer_in_dev = max(result.newer_in_dev, result.updated + len(newer.ids))
    for ids in _chunks(newer.ids, UNIT_ROWS):
        rows = _dev_rows(dev, plan, ids)
        images = session.run_transaction(before_images(plan, ids)).rows("before")
        files.keep_before_images(plan.table, images)
        hashes = {image["id"]: image["hash"] for image in images}
        expected = _expected_csv(images)
        waiting = watch.watching(session.application_name, result.updated) if watch else contextlib.nullcontext()
        held = session.holds_commit  # the unit's rows on disk before its COMMIT (run_files.py), or noted sending
        noted = new_unit_id() if held else files.sending(plan.table, "updated", ids=[i["id"] for i in images])

        def keep(results: Results, noted: str = noted, hashes: dict[str, str] = hashes) -> None:
            files.committing(plan.table, noted, {"updated": _with_before(results.rows("updated"), hashes)})

        try:
            with waiting:
                results = session.run_transaction(update_steps(plan, lambda rows=rows: [rows],
                                                               lambda expected=expected: [expected],
                                                               with_content=rejects.content_budget),
                                                  keep if held else None)
        except Exception as exc:
            if not session.connection_lost(exc):
                files.rolled_back(plan.table, noted)
            raise
        updated = results.rows("updated")
        if held:
            files.committed(plan.table, noted)
        else:
            files.record(plan.table, "updated", _with_before(updated, hashes), unit=noted)
        result.commits += 1
        result.bytes += len(rows)
        if updated:
            columns = reported_columns(plan)
            done = {u["id"] for u in updated}
            result.changes.add(dev_images(dev, plan, sorted(done), columns),
                               {i["id"]: i["row"] for i in images if i["id"] in done}, columns)
        refused = [r for r in results.rows("rejects") if r.get("state") != _UNIQUE_VIOLATION]
        for r in results.rows("rejects"):
            if r.get("state") == _UNIQUE_VIOLATION:
                name = r.get("constraint_name") or "unique key"
                result.skipped[name] = result.skipped.get(name, 0) + 1
        rejects.add([{k: r[k] for k in ("id", "reason", "row")} for r in refused])
        result.updated += len(updated)
        result.rejected += len(refused)
        answered = {u["id"] for u in updated} | {r["id"] for r in results.rows("rejects")}
        _explain(session, plan, [i for i in ids if i not in answered], hashes, result)
    result.reject_file = str(rejects.path) if rejects.written else None
    result.before_image_file = files.before_file(plan.table)
    result.seconds = round(result.seconds + time.perf_counter() - started, 3)
    return result
