"""Dev side: stream a table (or only the rows prod lacks) to a Postgres CSV file with COPY.

The file: written under a ``.partial`` name in one REPEATABLE READ snapshot, published without replacing
anything, followed by a load as it grows, cancelled with it. Which rows a delta holds is engine/delta.py's.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from websync_dagster.engine.catalog import UniqueKey
from websync_dagster.engine.delta import KeyReader, ProdKeys, delta_filter
from websync_dagster.engine.events import EventSink
from websync_dagster.engine.follow import READ_CHUNK, FollowedFile
from websync_dagster.engine.key_digest import Digests
from websync_dagster.engine.progress import DEFAULT_EVERY_S, Progress


@dataclass(frozen=True)
class ExportResult:
    table: str
    path: str
    scope: str  # "delta" (rows prod lacks) or "all"
    rows: int
    bytes: int
    sha256: str
    columns: tuple[str, ...]
    dev_rows: int
    already_in_prod: int
    clashes: dict[str, int]  # other unique key -> dev rows left out because prod holds that key value
    seconds: float
    #: prod's rows as counted with its id digests (read once per run, before the first table's export), or
    #: None when they were not read (a full export)
    prod_rows: int | None = None


def export_path(export_dir: Path, table: str, run_id: str) -> Path:
    """The run's own export file of ``table``: two runs never share one."""
    return export_dir / f"{table}_{run_id}.csv"


def select_list(columns: Sequence[str], overrides: Mapping[str, Any]) -> sql.Composed:
    items = [
        sql.SQL("{} AS {}").format(sql.Literal(overrides[c]), sql.Identifier(c))
        if c in overrides
        else sql.Identifier("t", c)
        for c in columns
    ]
    return sql.SQL(", ").join(items)


class _CancellableReader:
    """A KeyReader whose streams end (ExportCancelled) once the load following the export stopped. The keys
    prod sends go on into dev's COPY until the stream ends, whatever dev says when its statement is
    cancelled: the stream is cut here, and prod's COPY with it."""

    def __init__(self, reader: KeyReader, follow: FollowedFile) -> None:
        self._reader, self._follow = reader, follow

    def digests(self) -> Digests:
        self._follow.check_cancelled()
        return self._reader.digests()

    def ids(self, buckets: Sequence[str]) -> Iterable[bytes]:
        return self._checked(self._reader.ids(buckets))

    def holding(self, values: Mapping[UniqueKey, Sequence[Sequence[str]]]) -> Iterable[bytes]:
        return self._checked(self._reader.holding(values))

    def everything(self) -> Iterable[bytes]:
        return self._checked(self._reader.everything())

    def _checked(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        stream = iter(chunks)
        try:
            for chunk in stream:
                self._follow.check_cancelled()
                yield chunk
        finally:
            close = getattr(stream, "close", None)
            if close is not None:  # prod's COPY cancelled and drained now, in this thread
                close()


#: rows sampled to estimate the size of an export (for the progress display's total and ETA)
SAMPLED_ROWS = 200


def _csv_bytes_per_row(cur: psycopg.Cursor, table: str, columns: Sequence[str]) -> float:
    """Dev's estimate of one row's size in the export: the text form of a few rows of a 1% sample (or of
    the first rows of a small table). Only a progress estimate: never used for anything else."""
    row_text = sql.SQL("length(ROW({})::text)").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in columns))
    for sample in (sql.SQL(" TABLESAMPLE SYSTEM (1)"), sql.SQL("")):
        cur.execute(sql.SQL("SELECT avg(n) FROM (SELECT {} AS n FROM {} AS t{} LIMIT {}) AS s").format(
            row_text, sql.Identifier(table), sample, sql.Literal(SAMPLED_ROWS)))
        average = cur.fetchone()[0]
        if average is not None:
            return float(average)
    return 0.0


def _publish(partial: Path, path: Path) -> None:
    """Give the finished file its final name without ever replacing a file already there (a link
    fails with FileExistsError where a rename would overwrite)."""
    try:
        os.link(partial, path)
    finally:
        partial.unlink()


def export_table(
    dev: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    path: Path,
    *,
    prod_keys: ProdKeys | None = None,
    overrides: Mapping[str, Any] | None = None,
    report: EventSink | None = None,
    follow: FollowedFile | None = None,
    progress_every_s: float = DEFAULT_EVERY_S,
) -> ExportResult:
    """Write ``columns`` of ``table`` as CSV with a header to ``path``.

    With ``prod_keys`` (prod's primary key first, then its other unique keys), only the rows that
    clash with none of them are written: the keys go into a dev temp table, so the delta is computed by
    dev's planner and rows never pass through Python objects. Rows left out because prod holds the
    same value of another unique key are counted per key.

    With ``follow``, a reader in another thread is told when the file opens (prod's keys are read by
    then), as it grows, and when it is complete or the export failed; once the reader cancels
    (``FollowedFile.cancel``), the export stops at its next chunk (dev's COPY, prod's keys) with
    ExportCancelled. A file the export does not finish is removed.
    """
    try:
        result = _export(dev, table, columns, path, prod_keys, overrides or {}, report, follow, progress_every_s)
    except BaseException as exc:
        if follow is not None:
            follow.finished(exc)
        raise
    if follow is not None:
        follow.finished()
    return result


def _export(
    dev: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    path: Path,
    prod_keys: ProdKeys | None,
    overrides: Mapping[str, Any],
    report: EventSink | None,
    follow: FollowedFile | None,
    progress_every_s: float,
) -> ExportResult:
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    digest = hashlib.sha256()
    size = 0
    clashes: dict[str, int] = {}
    already = 0
    prod_rows = None
    if follow is not None and prod_keys is not None:
        prod_keys = replace(prod_keys, reader=_CancellableReader(prod_keys.reader, follow))
    with dev.transaction(), dev.cursor() as cur:
        # one snapshot: the digests, the counts and the rows exported all see the same dev rows
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        where = sql.SQL("")
        if prod_keys is not None and prod_keys.keys:
            delta = delta_filter(cur, table, prod_keys)
            dev_rows, already, clashes, prod_rows = delta.dev_rows, delta.already, delta.clashes, delta.prod_rows
            where = sql.SQL(" WHERE ") + delta.condition
        else:  # every row (a full export, or no key of prod's is shipped: nothing to match on)
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            dev_rows = cur.fetchone()[0]
        query = sql.SQL("COPY (SELECT {} FROM {} AS t{}) TO STDOUT (FORMAT csv, HEADER true)").format(
            select_list(columns, overrides), sql.Identifier(table), where
        )
        expected_rows = dev_rows - already - sum(clashes.values())
        per_row = _csv_bytes_per_row(cur, table, columns) if expected_rows > 0 and report is not None else 0.0
        progress = Progress(table, "export", report, total_rows=expected_rows, estimated=True,
                            total_bytes=round(expected_rows * per_row), every_s=progress_every_s)
        with open(partial, "xb") as out:
            try:
                with cur.copy(query) as copy:  # left early: psycopg cancels dev's COPY
                    if follow is not None:
                        follow.check_cancelled()
                        follow.opened(partial, progress.total_bytes, expected_rows)
                    told = 0
                    for chunk in progress.wrap(copy):
                        if follow is not None:
                            follow.check_cancelled()
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if follow is not None and size - told >= READ_CHUNK:
                            out.flush()
                            follow.grew()
                            told = size
            except BaseException:
                partial.unlink(missing_ok=True)  # the run's own, half written: of no use to anyone
                raise
        rows = cur.rowcount
    _publish(partial, path)
    return ExportResult(
        table=table,
        path=str(path),
        scope="all" if prod_keys is None else "delta",
        rows=rows,
        bytes=size,
        sha256=digest.hexdigest(),
        columns=tuple(columns),
        dev_rows=dev_rows,
        already_in_prod=already,
        clashes=clashes,
        seconds=round(time.perf_counter() - started, 3),
        prod_rows=prod_rows,
    )
