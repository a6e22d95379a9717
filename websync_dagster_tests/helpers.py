"""Shared test helpers: run the modes through the same functions the Dagster assets call."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql

from websync_dagster.core.settings import Settings
from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.export_load import LoadOutcome, run_load
from websync_dagster.engine.run import run_tables
from websync_dagster.engine.run_id import new_run_id


def sync_all(settings: Settings) -> dict[str, LoadOutcome]:
    """Every table, in FK order, exported and loaded as websync_job does (the load following the
    export file); raises the first table's error."""
    outcomes = {}
    with SyncContext(settings) as ctx:
        tables = settings.tables
        for run in run_tables(ctx, export=tables, load=tables, declared_deps=DECLARED_DEPS, run_id=new_run_id()):
            if run.error is not None:
                raise run.error
            assert run.load is not None
            outcomes[run.table] = run.load
    return outcomes


class LoadInThread:
    """run_load in a background thread, keeping what it raised for the test thread to examine."""

    def __init__(self, settings: Settings, table: str, export: ExportResult) -> None:
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._load, args=(settings, table, export))
        self.thread.start()

    def _load(self, settings: Settings, table: str, export: ExportResult) -> None:
        try:
            run_load(settings, table, export, declared_deps=DECLARED_DEPS)
        except BaseException as exc:  # noqa: BLE001 - examined by the test thread
            self.errors.append(exc)
        finally:
            self.done.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)


def rows_by_id(conn: psycopg.Connection, table: str, ids: list[str], columns: list[str] | None = None) -> dict:
    """Each row as {column: text value} (Postgres's own text output, so types compare exactly)."""
    cols = columns or [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        [table]).fetchall()]
    query = sql.SQL("SELECT id::text, {} FROM {} WHERE id = ANY(%s::uuid[])").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in cols), sql.Identifier(table))
    return {r[0]: dict(zip(cols, r[1:], strict=True)) for r in conn.execute(query, [ids]).fetchall()}


def count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def table_snapshot(conn: psycopg.Connection, table: str) -> dict[str, Any]:
    """id -> md5 of the whole row, to prove rows were left exactly as they were."""
    query = sql.SQL("SELECT id::text, md5(t::text) FROM {} AS t").format(sql.Identifier(table))
    return dict(conn.execute(query).fetchall())
