"""A table's update turn in a sync: ``update_newer`` with the same retries as the inserts after a lost link (the
next attempt finds again the rows still older in prod: the units committed before stay, with their images)."""

from __future__ import annotations

import time

from websync_dagster.core.errors import SyncError
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.events import EventSink, Note, Reconnecting
from websync_dagster.engine.export_load import REJECT_SUBDIR
from websync_dagster.engine.failure import UnitFailed, internal_error, is_bug, link_reason, reason
from websync_dagster.engine.load import REJECT_ROWS_WITH_CONTENT
from websync_dagster.engine.load.rejects import RejectFile
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.update.units import UpdateResult, update_newer

#: as the inserts' (engine/table_run.py)
RECONNECT_ATTEMPTS = 3
RECONNECT_PAUSE_S = 1.0


def run_update(ctx: SyncContext, plan: TablePlan, result: UpdateResult, run_id: str, report: EventSink | None) -> None:
    """Fill ``result`` with the update path of ``plan``'s table, or raise the error that stops it."""
    files = ctx.run_files(run_id)
    rejects = RejectFile(ctx.settings.export_dir / REJECT_SUBDIR, plan.table, f"{run_id}.update",
                         with_content=REJECT_ROWS_WITH_CONTENT)
    for attempt in range(RECONNECT_ATTEMPTS + 1):
        try:
            update_newer(ctx.dev, ctx.prod, plan, files, rejects, watch=ctx.lock_watch(plan.table, report),
                         into=result)
            break
        except SyncError:
            raise
        except Exception as exc:
            if ctx.prod_lost(exc) and attempt < RECONNECT_ATTEMPTS:
                pause = RECONNECT_PAUSE_S * 2 ** attempt
                if report is not None:
                    report(Reconnecting(plan.table, "prod", link_reason(exc, ctx.settings.redactor()), 0, pause,
                                        attempt + 1, RECONNECT_ATTEMPTS))
                ctx.reconnect()
                time.sleep(pause)
                continue
            if is_bug(exc):
                raise internal_error(plan.table, exc, ctx.settings.redactor()) from exc
            raise UnitFailed(plan.table, f"update in prod failed: {ctx.settings.redactor()(reason(exc))}; the unit in "
                             f"flight was rolled back ({result.updated} rows updated before stay, their before-images "
                             f"in {files.before(plan.table)})") from exc
    if report is not None:
        report(Note(f"{plan.table}: {result.updated} rows updated where dev's {result.version} is newer, "
                    f"{result.prod_newer_kept} newer in prod kept"
                    + (f", {result.rejected} rejected" if result.rejected else "")
                    + (f", before-images in {result.before_image_file}" if result.before_image_file else "")))

