"""``undo_job``: a run's changes to prod taken back (engine/undo/), the run id as its config; itself a run, with its
own before-images and manifest (so that it can be undone), under the same ``prod_sync`` pool as a sync.

No ``from __future__ import annotations``: Dagster reads the op's annotations (its config class)."""


from dagster import (
    Config,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from websync_dagster.core.report import markdown_table
from websync_dagster.defs.failures import as_failure
from websync_dagster.defs.log_events import to_log
from websync_dagster.defs.resources import WebsyncResource
from websync_dagster.engine.undo.apply import text_row, undo_run

UNDO_OP = "undo_run"


class UndoConfig(Config):
    run_id: str = Field(description="the id of the run to undo (its manifest is exports/manifests/<run id>.jsonl)")
    dry_run: bool = Field(default=False, description="say per table what would be restored, deleted and left alone; "
                          "write nothing")


def build_undo_job() -> JobDefinition:
    """Built by the definitions module (not at module level: see defs/jobs.py ``build_read_only_jobs``)."""

    @op(name=UNDO_OP, pool="prod_sync", out=Out(list, description="per table: deleted, restored, inserted, left alone"))
    def undo_op(context: OpExecutionContext, config: UndoConfig, websync: WebsyncResource) -> Output[list]:
        """Restore the before-images of the rows run ``run_id`` updated and delete the rows it inserted, only where
        prod still holds them as that run left them."""
        with as_failure(websync):
            tables = undo_run(websync.sync_context(), config.run_id, undo_run_id=context.run_id,
                              dry_run=config.dry_run, report=to_log(context.log))
        rows = [t.to_dict() for t in tables]
        left = [{"table": t.table, "id": i, "why": why} for t in tables for i, why in sorted(t.left.items())]
        files = {t.table: t.before_image_file for t in tables if t.before_image_file}
        manifest = websync.sync_context().run_files(context.run_id).manifest_file()
        return Output(rows, metadata={
            "undone_run": config.run_id,
            "dry_run": config.dry_run,
            "undo": MetadataValue.md(markdown_table([text_row(r) for r in rows])),
            "left_alone": MetadataValue.md(markdown_table(left[:200])) if left else "none",
            "before_image_files": MetadataValue.json(files),
            "manifest_file": manifest or "",
        })

    @job(executor_def=in_process_executor,
         description="Undo a run: restore what it updated, delete what it inserted, where prod still holds them as "
                     "that run left them (config: run_id, dry_run).")
    def undo_job() -> None:
        undo_op()

    return undo_job
