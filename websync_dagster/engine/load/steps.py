"""The steps both paths of a unit take (the table's advisory lock, its row counts) and the fast path's."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from psycopg import sql

from websync_dagster.engine.plan import TablePlan
from websync_dagster.transport.base import CopyIn, Query, Statement, Step


def advisory_lock(table: str) -> Statement:
    """Serialises syncs of one table: two runs never interleave their loads."""
    return Statement(sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended({}, 0))").format(
        sql.Literal(f"websync:{table}")
    ))


def count_rows(table: str, name: str = "rows") -> Query:
    return Query(name, sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table)))


def locked_and_counted(plan: TablePlan, *, count_before: bool) -> list[Step]:
    """A unit's first steps: the table's lock, then (the table's first unit) its rows before, as ``before``."""
    return [advisory_lock(plan.table), *([count_rows(plan.table, "before")] if count_before else [])]


def fast_path_steps(plan: TablePlan, source: Callable[[], Iterable[bytes]], *, count_before: bool) -> list[Step]:
    """COPY the unit straight into the table; its rows after, as ``after``."""
    return [
        *locked_and_counted(plan, count_before=count_before),
        CopyIn("copied", sql.Identifier(plan.table), plan.shipped, source),
        count_rows(plan.table, "after"),
    ]
