"""An in-memory dev behind the engine's ``DevSide``: its catalog answered from ``MemoryTable``s, and each
export written as a Postgres CSV file, following ``export.export_table``'s contract (the delta, the counts,
the file told to a ``FollowedFile`` as it grows, a cancelled or failed export removing its file).

The delta is computed from the prod model itself (rows prod has by id are already present, rows prod holds
on another unique key are left out and counted per key): dev's own SQL for it (the key digests, the temp
table of prod's keys) is the real-server suite's subject, not the fast layer's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from psycopg import sql

from websync_dagster.engine.catalog import QuerySession
from websync_dagster.engine.delta import ProdKeys
from websync_dagster.engine.dev_side import DevSide, ExportStopper
from websync_dagster.engine.events import EventSink
from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.follow import FollowedFile
from websync_dagster.engine.progress import DEFAULT_EVERY_S
from websync_dagster_tests.fast.memory_prod import MemoryDatabase, MemoryTable, Row, catalog_rows, catalog_tables, text


def csv_text(value: Any) -> str:
    """A value as Postgres's CSV output writes it (booleans ``t``/``f``)."""
    if isinstance(value, bool):
        return "t" if value else "f"
    return "" if value is None else str(value)


class _Catalog:
    def __init__(self, tables: Mapping[str, MemoryTable]) -> None:
        self._tables = tables

    def query(self, query: sql.Composable) -> list[dict[str, Any]]:
        said = text(query)
        if (asked := catalog_tables(said)) is None:
            raise NotImplementedError(f"the memory dev does not answer this query: {said[:200]}")
        return catalog_rows(self._tables, asked)


class _NoStop(ExportStopper):
    """Nothing to cancel: the memory export stops at its next row once the load cancelled (``check_cancelled``)."""

    def cancel(self, timeout: float) -> None:
        return None

    def shut_down(self) -> None:
        return None


class MemoryDev(DevSide):
    """Dev's tables in memory; ``prod``: the model the delta is computed against. ``fail``: table -> the
    error its export raises (a bug, a lost link to dev...), before it writes anything."""

    def __init__(self, tables: Sequence[MemoryTable], prod: MemoryDatabase) -> None:
        self.tables = {t.info.name: t for t in tables}
        self.prod = prod
        self.fail: dict[str, Callable[[], BaseException]] = {}
        self.exports: list[ExportResult] = []

    def catalog(self) -> QuerySession:
        return _Catalog(self.tables)

    def stopper(self) -> ExportStopper:
        return _NoStop()

    def export(
        self, table: str, columns: Sequence[str], path: Path, *, prod_keys: ProdKeys | None = None,
        overrides: Mapping[str, Any] | None = None, report: EventSink | None = None,
        follow: FollowedFile | None = None, progress_every_s: float = DEFAULT_EVERY_S,
    ) -> ExportResult:
        try:
            result = self._export(table, columns, path, prod_keys, overrides or {}, follow)
        except BaseException as exc:
            if follow is not None:
                follow.finished(exc)
            raise
        if follow is not None:
            follow.finished()
        self.exports.append(result)
        return result

    def _delta(self, table: str, prod_keys: ProdKeys | None) -> tuple[list[Row], int, dict[str, int]]:
        """The rows to ship, the rows prod has by id, and the rows left out per other unique key."""
        rows = list(self.tables[table].rows.values())
        if prod_keys is None or not prod_keys.keys:
            return rows, 0, {}
        prod = self.prod.tables[table].rows
        shipped, already, clashes = [], 0, {}
        for row in rows:
            for key in prod_keys.keys:
                value = tuple(row.get(c) for c in key.columns)
                if None not in value and any(tuple(p.get(c) for c in key.columns) == value for p in prod.values()):
                    if key.primary:
                        already += 1
                    else:
                        clashes[key.name] = clashes.get(key.name, 0) + 1
                    break
            else:
                shipped.append(row)
        return shipped, already, clashes

    def _export(self, table: str, columns: Sequence[str], path: Path, prod_keys: ProdKeys | None,
                overrides: Mapping[str, Any], follow: FollowedFile | None) -> ExportResult:
        started = time.perf_counter()
        if table in self.fail:
            raise self.fail[table]()
        rows, already, clashes = self._delta(table, prod_keys)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        digest, size = hashlib.sha256(), 0
        with open(partial, "xb") as out:
            try:
                if follow is not None:
                    follow.check_cancelled()
                    follow.opened(partial, 0, len(rows))
                values = [[overrides[c] if c in overrides else row.get(c) for c in columns] for row in rows]
                lines = [list(columns), *([csv_text(v) for v in line] for line in values)]
                for line in lines:
                    buffer = io.StringIO()
                    csv.writer(buffer, lineterminator="\n").writerow(line)
                    chunk = buffer.getvalue().encode("utf-8")
                    if follow is not None:
                        follow.check_cancelled()
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if follow is not None:
                        out.flush()
                        follow.grew()
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        try:
            os.link(partial, path)
        finally:
            partial.unlink()
        return ExportResult(
            table=table, path=str(path), scope="all" if prod_keys is None else "delta", rows=len(rows), bytes=size,
            sha256=digest.hexdigest(), columns=tuple(columns), dev_rows=len(self.tables[table].rows),
            already_in_prod=already, clashes=clashes, seconds=round(time.perf_counter() - started, 3),
            prod_rows=None if prod_keys is None else len(self.prod.tables[table].rows),
        )
