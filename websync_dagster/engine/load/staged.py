"""The staged path's steps for one unit, and what prod did with its rows, from the server's own counts.

``COPY`` into a text staging table; cast each row into a probe table that carries prod's types and CHECK
constraints (``sql/probe.sql``); the clash passes (clashes.py); then ``INSERT ... ON CONFLICT DO NOTHING``
of the whole unit in one statement, split down to the rows prod refuses (``sql/insert.sql``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from websync_dagster.engine.load.blocks import BlockSettings, block
from websync_dagster.engine.load.clashes import ALREADY_PRESENT, clash_passes
from websync_dagster.engine.load.steps import count_rows, landed_rows, locked_and_counted
from websync_dagster.engine.load.temp_tables import (
    INSERTED,
    LANDED,
    NULLED,
    PROBE,
    REJECTS,
    SKIPPED,
    STAGE,
    column_list,
)
from websync_dagster.engine.plan import TablePlan
from websync_dagster.transport.base import CopyIn, Query, Results, Statement, Step


def _cast_type(plan: TablePlan, column: str) -> str:
    """The type a staged text is cast to: prod's column type without its modifier. Storing the value into
    the probe's column (which has it) is an assignment, which refuses a text longer than ``varchar(12)``
    (and a vector of other dimensions); an explicit CAST to the modified type would silently cut it."""
    prod = plan.prod.column(column)
    return prod.base_type or prod.type


def block_settings(plan: TablePlan, into_table: sql.Composable | None = None) -> BlockSettings:
    """What the blocks read for ``plan``'s table; ``into_table``: the statement that writes the probe's rows of a
    range into the table (None: the insert, recording each inserted key in ``_ws_landed``)."""
    casts = sql.SQL(", ").join(
        sql.SQL("CAST({} AS {})").format(sql.Identifier(c), sql.SQL(_cast_type(plan, c))) for c in plan.shipped
    )
    probe_all = sql.SQL("INSERT INTO {probe} (_ws_row, {cols}) SELECT _ws_row, {casts} FROM {stage}").format(
        probe=PROBE, cols=column_list(plan.shipped), casts=casts, stage=STAGE
    )
    insert_range = into_table or sql.SQL(
        "WITH i AS (INSERT INTO {table} ({cols}) SELECT {cols} FROM {probe} WHERE _ws_pass = $1 AND _ws_row BETWEEN $2 "
        "AND $3 ORDER BY _ws_row ON CONFLICT DO NOTHING RETURNING {key}) INSERT INTO {landed} SELECT {key} FROM i"
    ).format(table=sql.Identifier(plan.table), cols=column_list(plan.shipped), probe=PROBE,
             key=sql.Identifier(plan.key), landed=LANDED)
    return BlockSettings(key=plan.key, table=plan.table, probe_all=probe_all,
                         probe_one=sql.SQL("{} WHERE _ws_row = $1").format(probe_all), insert_range=insert_range)


def stage_steps(plan: TablePlan, source: Callable[[], Iterable[bytes]]) -> list[Step]:
    """The stage, filled with the unit's rows (``staged``: the server's count), and the unit's other temp tables."""
    stage_columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in plan.shipped)
    return [
        Statement(sql.SQL(
            "CREATE TEMP TABLE _ws_stage (_ws_row bigint GENERATED ALWAYS AS IDENTITY, {}) ON COMMIT DROP"
        ).format(stage_columns)),
        CopyIn("staged", STAGE, plan.shipped, source),
        *_temp_tables(plan),
    ]


def rejects_query(with_content: int) -> Query:
    """The unit's rejects (``rejects``): id, prod's reason, SQLSTATE and constraint, and the staged row (the first
    ``with_content`` of them), in file order."""
    return Query("rejects", sql.SQL(
        "SELECT r.id, r.reason, r.state, r.constraint_name, "
        "CASE WHEN r.nth <= {limit} THEN to_jsonb(s) - '_ws_row' END AS row "
        "FROM (SELECT *, row_number() OVER (ORDER BY _ws_row) AS nth FROM {rejects}) AS r "
        "LEFT JOIN {stage} AS s USING (_ws_row) ORDER BY r._ws_row"
    ).format(limit=sql.Literal(with_content), rejects=REJECTS, stage=STAGE))


def _temp_tables(plan: TablePlan) -> list[Statement]:
    """The unit's temp tables (see temp_tables.py), but the stage."""
    return [
        Statement(sql.SQL(
            "CREATE TEMP TABLE _ws_probe (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED) "
            "ON COMMIT DROP"
        ).format(sql.Identifier(plan.table))),
        Statement(sql.SQL("ALTER TABLE {} ADD COLUMN _ws_row bigint, ADD COLUMN _ws_pass int NOT NULL DEFAULT 1")
                  .format(PROBE)),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_rejects (_ws_row bigint, id text, reason text, state text, "
                          "constraint_name text) ON COMMIT DROP")),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_landed ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            sql.Identifier(plan.key), sql.Identifier(plan.table))),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_skipped (key_name text, id text) ON COMMIT DROP")),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_nulled (column_name text, n bigint) ON COMMIT DROP")),
        Statement(sql.SQL("CREATE TEMP TABLE _ws_inserted (n bigint) ON COMMIT DROP")),
    ]


def staged_steps(plan: TablePlan, source: Callable[[], Iterable[bytes]], *, count_before: bool,
                 with_content: int) -> list[Step]:
    """``with_content``: how many of the unit's rejects (the first, in file order) come back with their row."""
    return [
        *locked_and_counted(plan, count_before=count_before),
        *stage_steps(plan, source),
        block_settings(plan).statement(),
        block("probe"),
        *clash_passes(plan),
        block("insert"),
        Query("inserted", sql.SQL("SELECT n FROM {}").format(INSERTED)),
        count_rows(plan.table, "after"),
        *landed_rows(plan, staged=True),
        Query("skipped", sql.SQL("SELECT key_name, count(*) AS n FROM {} GROUP BY key_name").format(SKIPPED)),
        Query("nulled", sql.SQL("SELECT column_name, sum(n)::bigint AS n FROM {} GROUP BY column_name")
              .format(NULLED)),
        rejects_query(with_content),
    ]


@dataclass(frozen=True)
class StagedCounts:
    """What prod did with the rows of one committed staged unit (the results of ``staged_steps``)."""

    #: the table's rows before the unit (None: not counted, not the table's first unit)
    before: int | None
    after: int
    #: rows sent (the server's count of the COPY into the stage)
    staged: int
    inserted: int
    #: rows prod has by primary key
    already_present: int
    #: unique key name -> rows left out on it
    skipped: dict[str, int]
    #: column(s) -> references set to NULL
    nulled: dict[str, int]
    #: id, reason and (within ``with_content``) row of each row prod refused, in file order
    refused: list[dict[str, Any]]
    #: id and xmin of each row inserted (for the run's manifest)
    landed: list[dict[str, Any]]

    @classmethod
    def read(cls, results: Results, *, counted_before: bool) -> StagedCounts:
        skipped = {r["key_name"]: r["n"] for r in results.rows("skipped")}
        return cls(
            before=results.value("before", "n") if counted_before else None,
            after=results.value("after", "n"),
            staged=results.value("staged", "rows"),
            inserted=results.value("inserted", "n"),
            already_present=skipped.pop(ALREADY_PRESENT, 0),
            skipped=skipped,
            nulled={r["column_name"]: r["n"] for r in results.rows("nulled")},
            refused=[{k: r[k] for k in ("id", "reason", "row")} for r in results.rows("rejects")],
            landed=results.rows("landed"),
        )

    @property
    def accounted(self) -> int:
        """Rows prod inserted, refused, skipped or already had (at most the rows sent)."""
        return min(self.inserted + len(self.refused) + self.already_present + sum(self.skipped.values()),
                   self.staged)
