"""The statements of one update unit (run by update/units.py): the before-images read, then the unit's transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from psycopg import sql

from websync_dagster.engine.load.blocks import block
from websync_dagster.engine.load.staged import block_settings, rejects_query, stage_steps
from websync_dagster.engine.load.steps import advisory_lock
from websync_dagster.engine.load.temp_tables import PROBE
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.row_image import fixed_text_forms, images_query, row_hash
from websync_dagster.transport.base import CopyIn, Query, Statement, Step

#: the before-image hash of each row of the unit (``id``, ``hash``): a row is updated only while prod holds it so
EXPECTED = sql.Identifier("pg_temp", "_ws_expected")
#: the id and hash (as the unit left it) of each row updated
UPDATED = sql.Identifier("pg_temp", "_ws_updated")


def before_images(plan: TablePlan, ids: Sequence[str]) -> list[Step]:
    """Prod's rows of ``ids`` now (``before``: ``id``, ``hash``, ``row``: every column's text form)."""
    return [fixed_text_forms(), Query("before", images_query(
        plan.table, plan.key, plan.prod.column(plan.key).type, ids, plan.prod.column_names, with_hash=True))]


def _update_range(plan: TablePlan) -> sql.Composed:
    """The UPDATE of the probe's rows of pass ``$1`` from ``_ws_row`` ``$2`` to ``$3``: each prod row of the same id
    that still is as its before-image shows, whose version is older and whose shipped columns differ; the id and
    new hash of each recorded in ``_ws_updated``."""
    key, version = sql.Identifier(plan.key), sql.Identifier(plan.version or "")
    columns = [c for c in plan.shipped if c != plan.key]
    assignments = sql.SQL(", ").join(sql.SQL("{c} = p.{c}").format(c=sql.Identifier(c)) for c in columns)
    ours = sql.SQL(", ").join(sql.Identifier("t", c) for c in columns)
    theirs = sql.SQL(", ").join(sql.Identifier("p", c) for c in columns)
    return sql.SQL(
        "WITH u AS (UPDATE {t} AS t SET {set} FROM {probe} AS p JOIN {expected} AS e ON e.id = p.{k}::text "
        "WHERE p._ws_pass = $1 AND p._ws_row BETWEEN $2 AND $3 AND t.{k} = p.{k} AND {h} = e.hash "
        "AND t.{v} < p.{v} AND ROW({ours})::text IS DISTINCT FROM ROW({theirs})::text "
        "RETURNING t.{k}::text AS id, {h} AS hash) INSERT INTO {updated} (id, hash) SELECT id, hash FROM u"
    ).format(t=sql.Identifier(plan.table), set=assignments, probe=PROBE, expected=EXPECTED, k=key, h=row_hash("t"),
             v=version, ours=ours, theirs=theirs, updated=UPDATED)


def update_steps(plan: TablePlan, rows: Callable[[], Iterable[bytes]], expected: Callable[[], Iterable[bytes]],
                 *, with_content: int) -> list[Step]:
    """One unit's transaction: ``rows`` (dev's rows, a CSV with header of ``plan.shipped``) staged, cast, and
    written over prod's rows where the rules allow; ``expected``: the CSV ``id,hash`` of their before-images."""
    return [
        fixed_text_forms(),
        advisory_lock(plan.table),
        *stage_steps(plan, rows),
        Statement(sql.SQL("CREATE TEMP TABLE {} (id text PRIMARY KEY, hash text) ON COMMIT DROP").format(EXPECTED)),
        CopyIn("expected", EXPECTED, ("id", "hash"), expected),
        Statement(sql.SQL("CREATE TEMP TABLE {} (id text, hash text) ON COMMIT DROP").format(UPDATED)),
        block_settings(plan, _update_range(plan)).statement(),
        block("probe"),
        block("insert"),
        Query("updated", sql.SQL("SELECT id, hash FROM {}").format(UPDATED)),
        rejects_query(with_content),
    ]
