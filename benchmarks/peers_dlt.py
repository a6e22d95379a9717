"""dlt's side of ``benchmarks/peers.py``: one dlt command, run by the peers' own venv (``benchmarks/.peers-venv``,
``dlt[postgres]`` with its ``sql_database`` source), never by websync's.

    benchmarks/.peers-venv/bin/python benchmarks/peers_dlt.py CONFIG.json

CONFIG.json: ``dev``, ``prod`` (URLs), ``pipelines_dir``, ``tables`` (FK order), ``columns`` (table -> the columns
to ship), ``variant``:

- ``documented``: the documented insert-only mode as it comes: ``sql_database`` over the four tables, each
  resource ``write_disposition={"disposition": "merge", "strategy": "insert-only"}, primary_key="id"``, one
  ``pipeline.run``;
- ``working``: the same merge strategy, with what it took to make it load: every shipped column selected as
  ``::text`` (the ``query_adapter_callback``; ``reflection_level="minimal"``, so dlt types them from the values),
  the staging tables created beforehand with prod's column types (by ``peers.py``), one ``pipeline.run`` per
  table in FK order;
- ``cursor``: ``working`` plus ``dlt.sources.incremental("created_at")`` on each table (the column left uncast).

Exits 0 when every run completed; otherwise prints the exception's first line on stderr and exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dlt
import sqlalchemy as sa
from dlt.sources.sql_database import sql_database

PIPELINE = "websync_peer"
INSERT_ONLY = {"disposition": "merge", "strategy": "insert-only"}


def keep_columns(columns: dict[str, list[str]]):
    def adapt(table: sa.Table) -> sa.Table:
        for column in list(table.columns):
            if column.name not in columns[table.name]:
                table._columns.remove(column)
        return table
    return adapt


def as_text(query, table, incremental=None, engine=None):
    cursor = incremental.cursor_path if incremental is not None else None
    return query.with_only_columns(*[c if c.name == cursor else sa.cast(c, sa.Text).label(c.name) for c in table.c])


def main(config: dict) -> None:
    pipeline = dlt.pipeline(pipeline_name=PIPELINE, destination=dlt.destinations.postgres(credentials=config["prod"]),
                            dataset_name="public", pipelines_dir=config["pipelines_dir"], progress=None)
    variant = config["variant"]
    if variant == "documented":
        source = sql_database(credentials=config["dev"], schema="public", table_names=config["tables"])
        for resource in source.resources.values():
            resource.apply_hints(write_disposition=INSERT_ONLY, primary_key="id")
        pipeline.run(source)
        return
    for table in config["tables"]:  # one run per table: one package's merge jobs are not run in FK order
        source = sql_database(credentials=config["dev"], schema="public", table_names=[table],
                              reflection_level="minimal", table_adapter_callback=keep_columns(config["columns"]),
                              query_adapter_callback=as_text)
        resource = source.resources[table]
        # every column typed text (an all-NULL column would otherwise be left out and get prod's default)
        hints = {c: {"data_type": "text", "nullable": True} for c in config["columns"][table]}
        if variant == "cursor":
            hints["created_at"] = {"data_type": "timestamp", "nullable": False}
        resource.apply_hints(write_disposition=INSERT_ONLY, primary_key="id", columns=hints,
                             incremental=dlt.sources.incremental("created_at") if variant == "cursor" else None)
        pipeline.run(source)


if __name__ == "__main__":
    try:
        main(json.loads(Path(sys.argv[1]).read_text()))
    except Exception as exc:  # the first line of the error, as the report quotes it
        cause = exc
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        lines = [line for line in str(cause).splitlines() if line.strip()] or [type(cause).__name__]
        step = getattr(exc, "step", None)
        print(f"{'at step=' + step + ': ' if step else ''}{type(cause).__name__}: {lines[0]}", file=sys.stderr)
        sys.exit(1)
