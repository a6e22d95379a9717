"""Dev side: stream a table (or only the rows prod lacks) to a Postgres CSV file with COPY."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from websync_dagster.engine.catalog import UniqueKey
from websync_dagster.engine.follow import READ_CHUNK, FollowedFile
from websync_dagster.engine.progress import Progress, Reporter


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


def export_path(export_dir: Path, table: str, run_id: str) -> Path:
    """The run's own export file of ``table``: two runs never share one."""
    return export_dir / f"{table}_{run_id}.csv"


def _select_list(columns: Sequence[str], overrides: Mapping[str, Any]) -> sql.Composed:
    items = [
        sql.SQL("{} AS {}").format(sql.Literal(overrides[c]), sql.Identifier(c))
        if c in overrides
        else sql.Identifier("t", c)
        for c in columns
    ]
    return sql.SQL(", ").join(items)


@dataclass(frozen=True)
class ProdKeys:
    """Prod's unique keys of one table (primary first) and, as COPY text, the values of all their
    columns in every prod row: one stream and one temp table per table, however many keys it has."""

    keys: tuple[UniqueKey, ...]
    columns: tuple[str, ...]
    chunks: Iterable[bytes]


def _load_prod_keys(cur: psycopg.Cursor, table: str, prod_keys: ProdKeys) -> list[sql.Composed]:
    """Put prod's key values into a dev temp table; return, per key, the condition 'this dev row
    clashes with prod on that key' (NULLs never clash, as in a unique index)."""
    temp = sql.Identifier("_ws_prod_keys")
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        temp, sql.SQL(", ").join(map(sql.Identifier, prod_keys.columns)), sql.Identifier(table)))
    with cur.copy(sql.SQL("COPY {} FROM STDIN").format(temp)) as copy:
        for chunk in prod_keys.chunks:
            copy.write(chunk)
    for key in prod_keys.keys:
        # the planner expects few dev rows to be missing and then probes the key table once per row: an
        # index keeps each probe cheap (a scan per row made the 1% run grow with rows x prod rows)
        columns = sql.SQL(", ").join(map(sql.Identifier, key.columns))
        cur.execute(sql.SQL("CREATE INDEX ON {} ({})").format(temp, columns))
    cur.execute(sql.SQL("ANALYZE {}").format(temp))
    return [
        sql.SQL("EXISTS (SELECT 1 FROM {} AS p WHERE {})").format(temp, sql.SQL(" AND ").join(
            sql.SQL("p.{c} = t.{c}").format(c=sql.Identifier(c)) for c in key.columns))
        for key in prod_keys.keys
    ]


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


def _delta_filter(
    cur: psycopg.Cursor, table: str, prod_keys: ProdKeys
) -> tuple[sql.Composable, int, dict[str, int]]:
    """The condition 'prod lacks this row on every unique key', the rows prod has by id, and the rows
    left out per other unique key."""
    if not prod_keys.keys:
        return sql.SQL("true"), 0, {}
    conditions = _load_prod_keys(cur, table, prod_keys)
    already, clashes = 0, {}
    for i, key in enumerate(prod_keys.keys):
        earlier = [sql.SQL("NOT {}").format(c) for c in conditions[:i]]
        cur.execute(sql.SQL("SELECT count(*) FROM {} AS t WHERE {}").format(
            sql.Identifier(table), sql.SQL(" AND ").join([*earlier, conditions[i]])))
        n = cur.fetchone()[0]
        if key.primary:
            already = n
        elif n:
            clashes[key.name] = n
    return sql.SQL(" AND ").join(sql.SQL("NOT {}").format(c) for c in conditions), already, clashes


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
    report: Reporter | None = None,
    follow: FollowedFile | None = None,
) -> ExportResult:
    """Write ``columns`` of ``table`` as CSV with a header to ``path``.

    With ``prod_keys`` (prod's primary key first, then its other unique keys), only the rows that
    clash with none of them are written: the keys go into a dev temp table, so the delta is computed by
    dev's planner and rows never pass through Python objects. Rows left out because prod holds the
    same value of another unique key are counted per key.

    With ``follow``, a reader in another thread is told when the file opens (prod's keys are read by
    then), as it grows, and when it is complete or the export failed.
    """
    try:
        result = _export(dev, table, columns, path, prod_keys, overrides or {}, report, follow)
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
    report: Reporter | None,
    follow: FollowedFile | None,
) -> ExportResult:
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    digest = hashlib.sha256()
    size = 0
    clashes: dict[str, int] = {}
    already = 0
    with dev.transaction(), dev.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        dev_rows = cur.fetchone()[0]
        where = sql.SQL("")
        if prod_keys is not None:
            condition, already, clashes = _delta_filter(cur, table, prod_keys)
            where = sql.SQL(" WHERE ") + condition
        query = sql.SQL("COPY (SELECT {} FROM {} AS t{}) TO STDOUT (FORMAT csv, HEADER true)").format(
            _select_list(columns, overrides), sql.Identifier(table), where
        )
        expected_rows = dev_rows - already - sum(clashes.values())
        per_row = _csv_bytes_per_row(cur, table, columns) if expected_rows > 0 and report is not None else 0.0
        progress = Progress(f"{table} export", report, total_rows=expected_rows, estimated=True,
                            total_bytes=round(expected_rows * per_row))
        with open(partial, "xb") as out, cur.copy(query) as copy:
            if follow is not None:
                follow.opened(partial)
            told = 0
            for chunk in progress.wrap(copy):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if follow is not None and size - told >= READ_CHUNK:
                    out.flush()
                    follow.grew()
                    told = size
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
    )
