"""The steps both paths of a unit take (the table's advisory lock, its row counts) and the fast path's."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from psycopg import sql

from websync_dagster.engine.load.temp_tables import LANDED
from websync_dagster.engine.plan import TablePlan
from websync_dagster.transport.base import CopyIn, Query, Statement, Step

#: the top-level transaction's id as the ``xid`` a row's ``xmin`` holds (``xid8`` has no cast to ``xid``)
_THIS_TRANSACTION = sql.SQL("(pg_current_xact_id()::text::bigint % 4294967296)::text::xid")


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


def landed_rows(plan: TablePlan, *, staged: bool) -> list[Step]:
    """The id and ``xmin`` of each row the unit inserted (for the run's manifest), as ``landed``: on the fast path
    the rows this transaction wrote (a COPY runs in the top-level transaction), on the staged path the ids the
    insert block recorded in ``_ws_landed`` (it inserts in subtransactions, whose ids are others).

    A row's ``xmin`` is the transaction that wrote that version of it: any later UPDATE of the row makes a new
    version with another ``xmin``, so undo deletes an inserted row only while its ``xmin`` is still the run's.
    Not a hash of the row: hashing every inserted row read the whole load back (a full sync took 1.22x as long)."""
    table, key = sql.Identifier(plan.table), sql.Identifier("t", plan.key)
    if staged:
        rows = sql.SQL("SELECT {k}::text AS id, t.xmin::text AS xmin FROM {landed} AS l JOIN {t} AS t "
                       "ON {k} = l.{key}").format(k=key, landed=LANDED, t=table, key=sql.Identifier(plan.key))
    else:
        rows = sql.SQL("SELECT {k}::text AS id, t.xmin::text AS xmin FROM {t} AS t WHERE t.xmin = {x}").format(
            k=key, t=table, x=_THIS_TRANSACTION)
    return [Query("landed", rows)]


def fast_path_steps(plan: TablePlan, source: Callable[[], Iterable[bytes]], *, count_before: bool) -> list[Step]:
    """COPY the unit straight into the table; its rows after, as ``after``; the rows it wrote, as ``landed``."""
    return [
        *locked_and_counted(plan, count_before=count_before),
        CopyIn("copied", sql.Identifier(plan.table), plan.shipped, source),
        count_rows(plan.table, "after"),
        *landed_rows(plan, staged=False),
    ]
