"""Prod side: insert-only load of an export file, in commit units (see engine/units.py), each one
transaction under the table's advisory lock.

Two ways for each unit, same outcome:
- fast path: ``COPY`` straight into the table. It succeeds when the unit clashes with nothing, which
  is the common case; any refusal rolls that transaction back and the staged path runs instead.
- staged path: ``COPY`` into a text staging table, cast each row into a probe table that carries
  prod's types and CHECK constraints (rows prod refuses are rejected with the reason, one by one,
  only if the set-based cast fails), drop rows that clash on a unique key (also prod's expression and
  partial unique indexes, and within the batch on those), null (or reject) references prod cannot
  satisfy, then ``INSERT ... ON CONFLICT DO NOTHING`` of the whole unit in one statement. If prod
  refuses a row there (a trigger, an index limit...), the batch is split in two and each half tried
  again, down to the single rows prod refuses, which are rejected with prod's message.

Nothing in prod is ever updated or deleted: the only statement touching the table is an INSERT (or
the COPY of the fast path).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from websync_dagster.core.errors import TableSyncError, first_line
from websync_dagster.engine.catalog import ExpressionKey, ForeignKey, TableInfo
from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.failure import unit_failure
from websync_dagster.engine.follow import ExportAborted, FollowedFile
from websync_dagster.engine.lock_wait import LockWatch
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.progress import Progress, Reporter
from websync_dagster.engine.units import Unit, UnitCutter
from websync_dagster.transport.base import CopyIn, ProdSession, Query, Statement, Step

CHUNK = 1 << 20
STAGE = sql.Identifier("pg_temp", "_ws_stage")
PROBE = sql.Identifier("pg_temp", "_ws_probe")
REJECTS = sql.Identifier("pg_temp", "_ws_rejects")
SKIPPED = sql.Identifier("pg_temp", "_ws_skipped")
NULLED = sql.Identifier("pg_temp", "_ws_nulled")
INSERTED = sql.Identifier("pg_temp", "_ws_inserted")
#: SQLSTATE classes of the errors a row can cause (its values, prod's constraints, indexes, triggers) and
#: their PL/pgSQL condition names; any other error (connection, resources, schema) rolls the unit in flight back
#: and fails the table (the units committed before stay)
ROW_REFUSALS = {
    "22": "data_exception",
    "23": "integrity_constraint_violation",
    "44": "with_check_option_violation",
    "54": "program_limit_exceeded",
    "P0": "plpgsql_error",  # RAISE in a trigger
}
ROW_REFUSAL_CONDITIONS = sql.SQL(" OR ").join(map(sql.SQL, ROW_REFUSALS.values()))
ALREADY_PRESENT = "already_present"
#: rejected rows of a table whose content is written to the reject file; beyond that (a prod refusing
#: every row of a large delta), id and reason only, so that a unit's rejects never fill the memory; the
#: file and the metadata say how many rows' content was left out
REJECT_ROWS_WITH_CONTENT = 20_000

# Casts every staged row into the probe table; if a row refuses (only the errors a row can cause:
# ROW_REFUSALS), row by row, recording why each bad row fails. Any other error (out of memory, a full disk,
# an extension's internal error) is not the row's fault: it is not caught, and the unit rolls back. A CHECK's
# or NOT NULL's detail is the whole failing row (told by SQLSTATE, in whatever language prod speaks): left
# out of the reason, the reject file has the row already. The two
# statements come in as settings so that the block itself holds no data.
_PROBE_BLOCK = """
DO $websync$
DECLARE
    r bigint;
    state text;
    msg text;
    detail text;
BEGIN
    BEGIN
        EXECUTE current_setting('websync.probe_all');
    EXCEPTION WHEN {conditions} THEN
        FOR r IN SELECT _ws_row FROM pg_temp._ws_stage ORDER BY _ws_row LOOP
            BEGIN
                EXECUTE current_setting('websync.probe_one') USING r;
            EXCEPTION WHEN {conditions} THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
                INSERT INTO pg_temp._ws_rejects (_ws_row, id, reason)
                SELECT r, s.{key}, replace(msg, '"_ws_probe"', {table_literal})
                       || CASE WHEN detail = '' OR state IN ('23514', '23502') THEN ''
                               ELSE ' (' || detail || ')' END
                  FROM pg_temp._ws_stage s WHERE s._ws_row = r;
            END;
        END LOOP;
    END;
END
$websync$
"""


@dataclass
class LoadResult:
    table: str
    mode: str  # "nothing to ship", "direct copy", "staged"
    before: int
    after: int
    shipped: int
    inserted: int
    already_present: int
    skipped: dict[str, int] = field(default_factory=dict)  # unique key name -> rows left out
    nulled: dict[str, int] = field(default_factory=dict)  # column -> references set to NULL
    rejected: int = 0
    reject_file: str | None = None
    #: rejected rows written to the reject file without their content (see REJECT_ROWS_WITH_CONTENT)
    reject_rows_cut: int = 0
    fallback_reason: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    wire_bytes: int | None = None  # sent over the link to the VPS, compressed (SSH transports)
    #: rows shipped that prod neither inserted, nor refused, nor already had: 0 unless something
    #: (a trigger, a rule) silently dropped them; from the server's own counts
    lost: int = 0
    #: transactions prod committed for the table (commit units, see engine/units.py)
    commits: int = 0
    #: rows of the committed units that prod inserted, refused, skipped or already had
    accounted: int = 0
    #: rows of the export that the committed units sent (the server's counts), to name a failed unit's rows
    sent: int = 0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def keep_only_inserted(self) -> None:
        """Before another attempt at the table: the rows earlier attempts refused, skipped or found present
        are not in prod, so the new attempt's export considers them again and counts them; only what the
        committed units inserted (and the references they nulled) stays counted here."""
        self.rejected, self.skipped, self.already_present, self.reject_rows_cut = 0, {}, 0, 0
        self.reject_file = None
        self.accounted = self.inserted
        self.sent = 0  # the new attempt's export holds only the rest


def advisory_lock(table: str) -> Statement:
    """Serialises syncs of one table: two runs never interleave their loads."""
    return Statement(sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended({}, 0))").format(
        sql.Literal(f"websync:{table}")
    ))


def count_rows(table: str, name: str = "rows") -> Query:
    return Query(name, sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table)))


def file_chunks(path: Path) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    return read


def _columns(names: Iterable[str], prefix: str | None = None) -> sql.Composed:
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


# Inserts the probe into the table: the whole batch in one statement; if prod refuses a row of it, the
# batch is split in two and each half tried again (in a subtransaction), down to the single rows prod
# refuses, which are rejected with prod's message. A row refused for a reference to a row of the batch
# not inserted yet is retried in a second pass, with the other such rows. The INSERT comes in as a
# setting (parameters: pass, first _ws_row, last _ws_row) so that the block holds no data.
_INSERT_BLOCK = """
DO $websync$
DECLARE
    los bigint[];
    his bigint[];
    lo bigint;
    hi bigint;
    mid bigint;
    n bigint;
    total bigint := 0;
    indexed boolean := false;
    state text;
    msg text;
    detail text;
BEGIN
    FOR pass_no IN 1..2 LOOP
        SELECT ARRAY[min(_ws_row)], ARRAY[max(_ws_row)] INTO los, his FROM pg_temp._ws_probe WHERE _ws_pass = pass_no;
        WHILE cardinality(los) > 0 LOOP
            lo := los[cardinality(los)];
            hi := his[cardinality(his)];
            los := los[1:cardinality(los) - 1];
            his := his[1:cardinality(his) - 1];
            CONTINUE WHEN lo IS NULL;
            BEGIN
                EXECUTE current_setting('websync.insert_range') USING pass_no, lo, hi;
                GET DIAGNOSTICS n = ROW_COUNT;
                total := total + n;
            EXCEPTION WHEN {conditions} THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
                IF NOT indexed THEN
                    CREATE INDEX ON pg_temp._ws_probe (_ws_row);
                    indexed := true;
                END IF;
                SELECT min(_ws_row), max(_ws_row) INTO lo, hi
                  FROM pg_temp._ws_probe WHERE _ws_pass = pass_no AND _ws_row BETWEEN lo AND hi;
                IF lo < hi THEN
                    mid := lo + (hi - lo) / 2;
                    los := los || ARRAY[mid + 1, lo];
                    his := his || ARRAY[hi, mid];
                ELSIF pass_no = 1 AND state = '23503' THEN
                    UPDATE pg_temp._ws_probe SET _ws_pass = 2 WHERE _ws_row = lo;
                ELSE
                    INSERT INTO pg_temp._ws_rejects (_ws_row, id, reason)
                    SELECT lo, p.{key}::text, msg || CASE WHEN detail = '' OR state IN ('23514', '23502')
                                                      THEN '' ELSE ' (' || detail || ')' END
                      FROM pg_temp._ws_probe p WHERE p._ws_row = lo;
                END IF;
            END;
        END LOOP;
    END LOOP;
    INSERT INTO pg_temp._ws_inserted (n) VALUES (total);
END
$websync$
"""


def refused_by_a_row(exc: BaseException) -> bool:
    """Whether prod refused the data (a row can cause this), rather than failed (connection, resources...)."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.Error) and bool(state) and state[:2] in ROW_REFUSALS


def _counted_before(plan: TablePlan, count_before: bool) -> list[Step]:
    return [count_rows(plan.table, "before")] if count_before else []


def _fast_path_steps(plan: TablePlan, source: Callable[[], Iterable[bytes]], *, count_before: bool) -> list[Step]:
    table = sql.Identifier(plan.table)
    return [
        advisory_lock(plan.table),
        *_counted_before(plan, count_before),
        CopyIn("copied", table, plan.shipped, source),
        count_rows(plan.table, "after"),
    ]


def _match(columns: Iterable[str], refs: Iterable[str], left: str, right: str) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(right, r), sql.Identifier(left, c))
        for c, r in zip(columns, refs, strict=True)
    )


def _skip_clashes(plan: TablePlan, prod: TableInfo) -> list[Step]:
    """Leave out rows whose id, or any other unique key, prod already has; count them per key."""
    steps: list[Step] = []
    for key in prod.unique_keys:
        if not set(key.columns) <= set(plan.shipped):
            continue
        label = ALREADY_PRESENT if key.primary else key.name
        steps.append(Statement(sql.SQL(
            "WITH gone AS (DELETE FROM {probe} AS p WHERE EXISTS (SELECT 1 FROM {table} AS t WHERE {match}) "
            "RETURNING p.{key}) INSERT INTO {skipped} (key_name, id) SELECT {label}, {key}::text FROM gone"
        ).format(
            probe=PROBE, table=sql.Identifier(plan.table), match=_match(key.columns, key.columns, "p", "t"),
            key=sql.Identifier(plan.key), skipped=SKIPPED, label=sql.Literal(label),
        )))
    return steps


def _key_columns(key: ExpressionKey) -> list[str]:
    """Names of the evaluated key expressions in the temp tables."""
    return [f"_ws_k{i}" for i in range(1, len(key.expressions) + 1)]


def _keys_match(key: ExpressionKey, left: str, right: str) -> sql.Composed:
    same = sql.SQL(" IS NOT DISTINCT FROM ") if key.nulls_not_distinct else sql.SQL(" = ")
    return sql.SQL(" AND ").join(
        sql.SQL("{}{}{}").format(sql.Identifier(left, k), same, sql.Identifier(right, k)) for k in _key_columns(key)
    )


def _skip_expression_clashes(plan: TablePlan, key: ExpressionKey, n: int) -> list[Step]:
    """Leave out rows that clash, on a unique index over expressions or a partial one, with a prod row or
    with an earlier row of the batch; count them under the index's name.

    The index's expressions (and predicate) are prod's own SQL over the table's column names: evaluated
    on the probe (same columns) into a temp table, then on prod's rows holding those values only (so
    that prod's index serves the lookup).
    """
    keys_name = f"_ws_xkey_{n}"
    keys = sql.Identifier("pg_temp", keys_name)
    exprs = [sql.SQL(e) for e in key.expressions]
    predicate = sql.SQL(key.predicate) if key.predicate else sql.SQL("true")
    if not key.nulls_not_distinct:  # NULLs never clash in such an index
        predicate = sql.SQL(" AND ").join([sql.SQL("({})").format(predicate),
                                           *(sql.SQL("({}) IS NOT NULL").format(e) for e in exprs)])
    names = _key_columns(key)
    evaluated = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(e, sql.Identifier(k)) for e, k in zip(exprs, names, strict=True))
    in_prod = sql.SQL("SELECT DISTINCT {evaluated} FROM {table} WHERE {pred}").format(
        evaluated=evaluated, table=sql.Identifier(plan.table), pred=predicate)
    if not key.nulls_not_distinct:  # only prod's rows with the batch's values, found through the index
        in_prod = sql.SQL("{} AND ({}) IN (SELECT {} FROM {})").format(
            in_prod, sql.SQL(", ").join(exprs), _columns(names), keys)
    skip = sql.SQL(
        "WITH gone AS (DELETE FROM {probe} AS p USING {rows} AS x WHERE p._ws_row = x._ws_row RETURNING p.{id}) "
        "INSERT INTO {skipped} (key_name, id) SELECT {label}, {id}::text FROM gone")
    clash_prod = sql.SQL("(SELECT x._ws_row FROM {keys} AS x JOIN ({in_prod}) AS h ON {match})").format(
        keys=keys, in_prod=in_prod, match=_keys_match(key, "x", "h"))
    later_twin = sql.SQL(
        "(SELECT _ws_row FROM (SELECT x._ws_row, row_number() OVER (PARTITION BY {names} ORDER BY x._ws_row) AS nth "
        "FROM {keys} AS x JOIN {probe} AS p USING (_ws_row)) AS r WHERE nth > 1)"
    ).format(names=_columns(names, "x"), keys=keys, probe=PROBE)
    fill = dict(probe=PROBE, id=sql.Identifier(plan.key), skipped=SKIPPED, label=sql.Literal(key.name))
    return [
        Statement(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT _ws_row, {} FROM {} WHERE {}").format(
            sql.Identifier(keys_name), evaluated, PROBE, predicate)),
        Statement(skip.format(rows=clash_prod, **fill)),
        Statement(skip.format(rows=later_twin, **fill)),
    ]


def _missing_target(plan: TablePlan, fk: ForeignKey) -> sql.Composed:
    """Rows of the probe whose reference prod cannot satisfy (NULL references never count)."""
    present = [sql.SQL("EXISTS (SELECT 1 FROM {} AS r WHERE {})").format(
        sql.Identifier(fk.ref_table), _match(fk.columns, fk.ref_columns, "p", "r"))]
    if fk.ref_table == plan.table:  # self-reference: a row of the same batch is a valid target
        present.append(sql.SQL("EXISTS (SELECT 1 FROM {} AS r WHERE {})").format(
            PROBE, _match(fk.columns, fk.ref_columns, "p", "r")))
    not_null = sql.SQL(" AND ").join(sql.SQL("p.{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.columns)
    return sql.SQL("{} AND NOT ({})").format(not_null, sql.SQL(" OR ").join(present))


def _fix_references(plan: TablePlan, prod: TableInfo) -> list[Step]:
    """References to rows prod lacks: set to NULL when the column allows it, else reject the row."""
    steps: list[Step] = []
    fks = [fk for fk in prod.foreign_keys if set(fk.columns) <= set(plan.shipped)]
    required = [fk for fk in fks if any(prod.column(c).not_null for c in fk.columns)]
    optional = [fk for fk in fks if fk not in required]
    for fk in required:
        reason = sql.SQL(
            "format('%s references %s(%s) = %s, which prod does not have (constraint %s)', "
            "{cols}, {ref}, {refcols}, concat_ws(', ', {vals}), {name})"
        ).format(
            cols=sql.Literal(", ".join(fk.columns)), ref=sql.Literal(fk.ref_table),
            refcols=sql.Literal(", ".join(fk.ref_columns)), name=sql.Literal(fk.name),
            vals=sql.SQL(", ").join(sql.SQL("p.{}::text").format(sql.Identifier(c)) for c in fk.columns),
        )
        steps.append(Statement(sql.SQL(
            "WITH gone AS (DELETE FROM {probe} AS p WHERE {missing} RETURNING p._ws_row, p.{key}::text AS id, "
            "{reason} AS reason) INSERT INTO {rejects} (_ws_row, id, reason) SELECT _ws_row, id, reason FROM gone"
        ).format(probe=PROBE, missing=_missing_target(plan, fk), key=sql.Identifier(plan.key),
                 reason=reason, rejects=REJECTS)))
    for fk in optional:
        assignments = sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in fk.columns)
        steps.append(Statement(sql.SQL(
            "WITH fixed AS (UPDATE {probe} AS p SET {assign} WHERE {missing} RETURNING 1) "
            "INSERT INTO {nulled} (column_name, n) SELECT {label}, count(*) FROM fixed"
        ).format(probe=PROBE, assign=assignments, missing=_missing_target(plan, fk), nulled=NULLED,
                 label=sql.Literal(", ".join(fk.columns)))))
    return steps


def _staged_steps(
    plan: TablePlan, prod: TableInfo, source: Callable[[], Iterable[bytes]], *, count_before: bool,
    with_content: int = REJECT_ROWS_WITH_CONTENT,
) -> list[Step]:
    """``with_content``: how many of the unit's rejects (the first, in file order) come back with their row."""
    table = sql.Identifier(plan.table)
    stage_columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in plan.shipped)
    casts = sql.SQL(", ").join(
        sql.SQL("CAST({} AS {})").format(sql.Identifier(c), sql.SQL(prod.column(c).type)) for c in plan.shipped
    )
    probe_all = sql.SQL("INSERT INTO {probe} (_ws_row, {cols}) SELECT _ws_row, {casts} FROM {stage}").format(
        probe=PROBE, cols=_columns(plan.shipped), casts=casts, stage=STAGE
    )
    probe_one = sql.SQL("{} WHERE _ws_row = $1").format(probe_all)
    insert_range = sql.SQL(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM {probe} WHERE _ws_pass = $1 AND _ws_row BETWEEN $2 AND $3 "
        "ORDER BY _ws_row ON CONFLICT DO NOTHING"
    ).format(table=table, cols=_columns(plan.shipped), probe=PROBE)
    return [
        advisory_lock(plan.table),
        *_counted_before(plan, count_before),
        Statement(sql.SQL(
            "CREATE TEMP TABLE _ws_stage (_ws_row bigint GENERATED ALWAYS AS IDENTITY, {}) ON COMMIT DROP"
        ).format(stage_columns)),
        CopyIn("staged", STAGE, plan.shipped, source),
        Statement(sql.SQL(
            "CREATE TEMP TABLE _ws_probe (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED) "
            "ON COMMIT DROP"
        ).format(table)),
        Statement(sql.SQL("ALTER TABLE {} ADD COLUMN _ws_row bigint, ADD COLUMN _ws_pass int NOT NULL DEFAULT 1")
                  .format(PROBE)),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_rejects (_ws_row bigint, id text, reason text) ON COMMIT DROP")),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_skipped (key_name text, id text) ON COMMIT DROP")),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_nulled (column_name text, n bigint) ON COMMIT DROP")),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_inserted (n bigint) ON COMMIT DROP")),
        Statement(sql.SQL("SELECT set_config('websync.probe_all', {}, true), set_config('websync.probe_one', {}, true)")
                  .format(sql.Literal(probe_all.as_string(None)), sql.Literal(probe_one.as_string(None)))),
        Statement(sql.SQL(_PROBE_BLOCK).format(conditions=ROW_REFUSAL_CONDITIONS, key=sql.Identifier(plan.key),
                                               table_literal=sql.Literal(f'"{plan.table}"'))),
        *_skip_clashes(plan, prod),
        *(step for n, key in enumerate(prod.expression_keys) for step in _skip_expression_clashes(plan, key, n)),
        *_fix_references(plan, prod),
        Statement(sql.SQL("SELECT set_config('websync.insert_range', {}, true)").format(sql.Literal(
            insert_range.as_string(None)))),
        Statement(sql.SQL(_INSERT_BLOCK).format(conditions=ROW_REFUSAL_CONDITIONS, key=sql.Identifier(plan.key))),
        Query("inserted", sql.SQL("SELECT n FROM {}").format(INSERTED)),
        count_rows(plan.table, "after"),
        Query("skipped", sql.SQL("SELECT key_name, count(*) AS n FROM {} GROUP BY key_name").format(SKIPPED)),
        Query("nulled", sql.SQL("SELECT column_name, sum(n)::bigint AS n FROM {} GROUP BY column_name")
              .format(NULLED)),
        Query("rejects", sql.SQL(
            "SELECT r.id, r.reason, CASE WHEN r.nth <= {limit} THEN to_jsonb(s) - '_ws_row' END AS row "
            "FROM (SELECT *, row_number() OVER (ORDER BY _ws_row) AS nth FROM {rejects}) AS r "
            "LEFT JOIN {stage} AS s USING (_ws_row) ORDER BY r._ws_row"
        ).format(limit=sql.Literal(with_content), rejects=REJECTS, stage=STAGE)),
    ]


class _Rejects:
    """The run's own reject file of a table (``stamp`` is the run id): created exclusively at the first
    rejected row, never another run's, and added to as each unit commits."""

    def __init__(self, reject_dir: Path, table: str, stamp: str) -> None:
        self.table = table
        self.path = reject_dir / f"{table}_{stamp}.rejects.jsonl"
        self.written = 0
        #: rejects written without their row's content (past REJECT_ROWS_WITH_CONTENT)
        self.content_cut = 0

    @property
    def content_budget(self) -> int:
        """How many more rejects may come back with their row's content."""
        return max(REJECT_ROWS_WITH_CONTENT - (self.written - self.content_cut), 0)

    def add(self, rejects: list[dict[str, Any]]) -> None:
        if not rejects:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "a" if self.written else "x", encoding="utf-8") as out:
                for reject in rejects:
                    if reject.get("row") is None:
                        self.content_cut += 1
                        reject = {**reject, "row_cut": f"more than {REJECT_ROWS_WITH_CONTENT} rows of {self.table} "
                                  "were rejected in this run: only their id and reason are kept"}
                    out.write(json.dumps({"table": self.table, **reject}, ensure_ascii=False) + "\n")
        except FileExistsError:
            raise TableSyncError(self.table, f"{len(rejects)} rows were rejected but {self.path} already exists: it "
                                 "was left as it was and these rejects were not written (the inserted rows are "
                                 "committed)") from None
        self.written += len(rejects)


def read_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return f.readline().rstrip("\r\n").split(",")


def unit_seconds(plan: TablePlan, commit_every_s: float | None) -> float | None:
    """How long a commit unit of the table sends before it commits; None (one unit for the whole table)
    when the table references itself: a row may reference one further down the file, which must be
    in the same transaction for prod to accept the reference (or for it to be kept)."""
    assert plan.prod is not None
    if any(fk.ref_table == plan.table for fk in plan.prod.foreign_keys):
        return None
    return commit_every_s


def load_export(
    session: ProdSession,
    plan: TablePlan,
    export_file: Path,
    *,
    rows: int,
    reject_dir: Path,
    stamp: str,
    already_in_prod: int = 0,
    commit_every_s: float | None = None,
    report: Reporter | None = None,
    watch: LockWatch | None = None,
) -> LoadResult:
    """Insert the rows of ``export_file`` (CSV with header, columns ``plan.shipped``) into prod, in
    commit units of ``commit_every_s`` seconds of sending (None: one transaction)."""
    started = time.perf_counter()
    assert plan.prod is not None
    header = [c.strip('"') for c in read_header(export_file)]
    if header != list(plan.shipped):
        raise TableSyncError(plan.table, f"export {export_file} has columns {header}, expected {list(plan.shipped)}")
    size = export_file.stat().st_size
    progress = Progress(f"{plan.table} load", report, total_bytes=size, total_rows=rows)
    result = LoadResult(plan.table, "nothing to ship", 0, 0, 0, 0, 0)
    cutter = UnitCutter(progress.wrap(file_chunks(export_file)()), os.open(export_file, os.O_RDONLY),
                        unit_seconds(plan, commit_every_s))
    with _rolled_back_on_error(plan.table, result), contextlib.closing(cutter):
        _load_units(session, plan, cutter, result, _Rejects(reject_dir, plan.table, stamp), watch)
    _settle(result, rows, already_in_prod, accounted_before=0, inserted_before=0)
    result.bytes = size if rows else 0
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def load_followed(
    session: ProdSession,
    plan: TablePlan,
    followed: FollowedFile,
    finish_export: Callable[[], ExportResult],
    *,
    reject_dir: Path,
    stamp: str,
    commit_every_s: float | None = None,
    into: LoadResult | None = None,
    report: Reporter | None = None,
    watch: LockWatch | None = None,
) -> LoadResult:
    """Insert into prod the export that another thread is writing, as it is written, in commit units.

    Each unit is a COPY straight into the table (or, when prod refuses a row of it or the transport
    cannot, the staged path on the same rows) committed on its own, after ``commit_every_s`` seconds
    of sending. An export that fails aborts the unit in flight, which rolls back; units committed
    before hold whole rows of dev's snapshot, and the next run ships the rest. ``finish_export``
    waits for the export and returns its result, or raises its error. ``into``: the result of an
    earlier attempt of the same table that committed some units (the figures add up).
    """
    started = time.perf_counter()
    assert plan.prod is not None
    result = into if into is not None else LoadResult(plan.table, "nothing to ship", 0, 0, 0, 0, 0)
    accounted_before, inserted_before = result.accounted, result.inserted
    with _rolled_back_on_error(plan.table, result):
        if not followed.wait_opened():  # the export reads prod's keys through this session until then
            finish_export()
        progress = Progress(f"{plan.table} load", report, total_bytes=followed.estimated_bytes,
                            total_rows=followed.estimated_rows, estimated=True)
        cutter = UnitCutter(progress.wrap(followed.chunks()), followed.descriptor(), unit_seconds(plan, commit_every_s))
        with contextlib.closing(cutter):
            try:
                _load_units(session, plan, cutter, result, _Rejects(reject_dir, plan.table, stamp), watch)
            except Exception:
                if followed.failed:  # the export's error is the one to report, not the COPY it aborted
                    finish_export()
                raise  # the load's own: the caller stops the export
        export = finish_export()
    _settle(result, export.rows, export.already_in_prod, accounted_before=accounted_before,
            inserted_before=inserted_before)
    result.bytes = export.bytes if export.rows else 0
    result.seconds = round(result.seconds + time.perf_counter() - started, 3)
    return result


def _settle(result: LoadResult, rows: int, already_in_prod: int, *, accounted_before: int,
            inserted_before: int) -> None:
    """The table's figures once its export is loaded whole. An earlier attempt's committed rows are
    in this export's ``already_in_prod`` (prod has their ids now): counted as shipped, not as present."""
    result.shipped = accounted_before + rows
    result.already_present += already_in_prod - inserted_before
    result.lost = result.shipped - result.accounted


@contextlib.contextmanager
def _rolled_back_on_error(table: str, result: LoadResult) -> Iterator[None]:
    """Any error but the engine's own becomes one line naming the table and what the committed units kept
    (the unit in flight is rolled back); the error stays the cause."""
    try:
        yield
    except TableSyncError:
        raise
    except Exception as exc:
        raise unit_failure(table, exc, first_row=result.sent + 1, last_row=None,
                           committed_rows=result.inserted) from exc


def _load_units(session: ProdSession, plan: TablePlan, cutter: UnitCutter, result: LoadResult,
                rejects: _Rejects, watch: LockWatch | None) -> None:
    """Send and commit the file unit by unit; ``result`` holds the figures of the units committed so far.
    ``watch`` names what a unit waits for in prod (see engine/lock_wait.py)."""
    while cutter.has_rows():
        unit = cutter.next_unit()
        first = result.commits == 0
        waiting = watch.watching(session.application_name, result.inserted) if watch else contextlib.nullcontext()
        try:
            with waiting:
                if not (session.supports_fast_path and _fast_unit(session, plan, unit, result, first)):
                    _staged_unit(session, plan, unit.source, result, rejects, first)
        except (TableSyncError, ExportAborted):
            raise
        except Exception as exc:
            raise unit_failure(plan.table, exc, first_row=result.sent + 1, last_row=cutter.last_row(unit, result.sent),
                               committed_rows=result.inserted) from exc
        result.commits += 1
    if result.commits == 0:
        result.before = result.after = session.query(count_rows(plan.table).query)[0]["n"]


def _staged_unit(
    session: ProdSession,
    plan: TablePlan,
    source: Callable[[], Iterable[bytes]],
    result: LoadResult,
    rejects: _Rejects,
    first: bool,
) -> None:
    """The staged path for one unit, adding the server's counts to ``result``."""
    assert plan.prod is not None
    results = session.run_transaction(_staged_steps(plan, plan.prod, source, count_before=first,
                                                    with_content=rejects.content_budget))
    skipped, nulled, refused = results.rows("skipped"), results.rows("nulled"), results.rows("rejects")
    result.mode = "staged"
    if first:
        result.before = results.value("before", "n")
    result.after = results.value("after", "n")
    inserted = results.value("inserted", "n")
    result.inserted += inserted
    for r in skipped:
        if r["key_name"] != ALREADY_PRESENT:
            result.skipped[r["key_name"]] = result.skipped.get(r["key_name"], 0) + r["n"]
    present_now = sum(r["n"] for r in skipped if r["key_name"] == ALREADY_PRESENT)
    result.already_present += present_now
    for r in nulled:
        if r["n"]:
            result.nulled[r["column_name"]] = result.nulled.get(r["column_name"], 0) + r["n"]
    result.rejected += len(refused)
    rejects.add(refused)
    if rejects.written:
        result.reject_file = str(rejects.path)
    result.reject_rows_cut = rejects.content_cut
    staged = results.value("staged", "rows")
    accounted = inserted + len(refused) + sum(r["n"] for r in skipped)
    result.accounted += min(accounted, staged)
    result.sent += staged


def _fast_unit(session: ProdSession, plan: TablePlan, unit: Unit, result: LoadResult, first: bool) -> bool:
    """COPY one unit straight into the table; on refusal record why, leave the table as it was, read the
    unit to its end (the staged path sends it again) and return False."""
    try:
        results = session.run_transaction(_fast_path_steps(plan, unit.source, count_before=first))
    except psycopg.Error as exc:
        if not refused_by_a_row(exc):
            raise
        result.fallback_reason = result.fallback_reason or first_line(exc)
        unit.read_to_end()
        return False
    if result.mode != "staged":
        result.mode = "direct copy"
    if first:
        result.before = results.value("before", "n")
    result.after = results.value("after", "n")
    copied = results.value("copied", "rows")  # the server's count: a row a trigger swallowed is not in it
    result.inserted += copied
    result.accounted += copied
    result.sent += copied
    return True
