"""The statements of one undo unit: prod's rows now, the rows referencing them, and the unit's transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from psycopg import sql

from websync_dagster.engine.catalog import TableInfo
from websync_dagster.engine.load.steps import advisory_lock
from websync_dagster.engine.row_image import (
    fixed_text_forms,
    from_image,
    images_query,
    key_array,
    row_hash,
    writable_columns,
)
from websync_dagster.transport.base import CopyIn, Query, Statement, Step

UNDO = sql.Identifier("pg_temp", "_ws_undo")
UNDONE = sql.Identifier("pg_temp", "_ws_undone")
UNDO_COLUMNS = ("action", "id", "expect", "image")


def _key(info: TableInfo) -> str:
    (key,) = info.primary_key
    return key


def _ids(info: TableInfo, ids: Sequence[str]) -> sql.Composed:
    return key_array(ids, info.column(_key(info)).type)


def rows_now(info: TableInfo, ids: Sequence[str]) -> list[Step]:
    """``now``: prod's rows of ``ids`` (``id``, ``hash``, ``xmin``, ``row``: their image)."""
    key = _key(info)
    return [fixed_text_forms(), Query("now", images_query(info.name, key, info.column(key).type, ids,
                                                          info.column_names, with_hash=True, with_xmin=True))]


@dataclass(frozen=True)
class Reference:
    """A one-column foreign key of a prod table (any, synced or not) onto a table's key."""

    schema: str
    table: str
    column: str
    #: the referencing table's key column, when the run's manifest names that table (its rows may be undone too)
    key: str | None = None

    @property
    def name(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)


def references_query(info: TableInfo) -> sql.Composed:
    """Every one-column foreign key of prod onto ``info``'s table (``schema``, ``table``, ``column``)."""
    return sql.SQL(
        "SELECT n.nspname AS schema, r.relname AS table, a.attname AS column FROM pg_constraint c "
        "JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE c.contype = 'f' AND c.confrelid = {}::regclass AND cardinality(c.conkey) = 1 ORDER BY 1, 2, 3"
    ).format(sql.Literal(info.name))


def referencing(info: TableInfo, refs: Sequence[Reference], ids: Sequence[str]) -> list[Query]:
    """Per foreign key onto the table, the ids of ``ids`` that a prod row references (``ref_<n>``: ``id``, ``by``: the
    referencing table, ``row``: the referencing row's key when ``Reference.key`` is known)."""
    return [Query(f"ref_{n}", sql.SQL("SELECT DISTINCT o.{c}::text AS id, {by} AS by, {row} AS row FROM {o} AS o "
                                      "WHERE o.{c} = ANY({ids})").format(
        c=sql.Identifier(ref.column), by=sql.Literal(ref.table), o=ref.name, ids=_ids(info, ids),
        row=sql.SQL("o.{}::text").format(sql.Identifier(ref.key)) if ref.key else sql.SQL("NULL::text")))
        for n, ref in enumerate(refs)]


def _unreferenced(info: TableInfo, refs: Sequence[Reference]) -> sql.Composable:
    """No prod row references ``t``, but rows of the same table this unit deletes too (undo/apply.py decides which
    go together)."""
    key = sql.Identifier(_key(info))
    checks = []
    for ref in refs:
        also_going = sql.SQL("")
        if ref.table == info.name and ref.key is not None:
            also_going = sql.SQL(" AND o.{}::text NOT IN (SELECT id FROM {} WHERE action = 'delete')").format(
                sql.Identifier(ref.key), UNDO)
        checks.append(sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS o WHERE o.{} = t.{}{})").format(
            ref.name, sql.Identifier(ref.column), key, also_going))
    return sql.SQL(" AND ").join(checks) if checks else sql.SQL("true")


def undo_steps(info: TableInfo, refs: Sequence[Reference], actions: Callable[[], Iterable[bytes]]) -> list[Step]:
    """One unit's transaction: the actions (a CSV of ``UNDO_COLUMNS``) staged, then each row deleted, restored from
    its image, or inserted from it, only while prod holds it as expected (a delete: the same ``xmin``; a restore:
    the same hash; an insert: no row of that id), a delete only while no prod row references the row; ``undone``:
    what was done (with the new hash of a restored row, the ``xmin`` of an inserted one)."""
    t, key = sql.Identifier(info.name), sql.Identifier(_key(info))
    key_type = sql.SQL(info.column(_key(info)).type)
    image = sql.SQL("u.image")
    columns = writable_columns(info)
    restore = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), from_image(info, c, image))
                                 for c in columns if c != _key(info))
    this_row = sql.SQL("t.{k} = CAST(u.id AS {kt})").format(k=key, kt=key_type)
    same = sql.SQL("{} AND {} = u.expect").format(this_row, row_hash("t"))
    return [
        fixed_text_forms(),
        advisory_lock(info.name),
        Statement(sql.SQL("CREATE TEMP TABLE {} (action text, id text, expect text, image jsonb) ON COMMIT DROP")
                  .format(UNDO)),
        CopyIn("staged", UNDO, UNDO_COLUMNS, actions),
        Statement(sql.SQL("CREATE TEMP TABLE {} (action text, id text, hash text) ON COMMIT DROP").format(UNDONE)),
        Statement(sql.SQL(
            "WITH d AS (DELETE FROM {t} AS t USING {undo} AS u WHERE u.action = 'delete' AND {row} "
            "AND t.xmin::text = u.expect AND {free} RETURNING u.id) "
            "INSERT INTO {undone} SELECT 'delete', id, NULL FROM d"
        ).format(t=t, undo=UNDO, row=this_row, free=_unreferenced(info, refs), undone=UNDONE)),
        Statement(sql.SQL(
            "WITH r AS (UPDATE {t} AS t SET {restore} FROM {undo} AS u WHERE u.action = 'restore' AND {same} "
            "RETURNING u.id, {h} AS hash) INSERT INTO {undone} SELECT 'restore', id, hash FROM r"
        ).format(t=t, restore=restore, undo=UNDO, same=same, h=row_hash("t"), undone=UNDONE)),
        Statement(sql.SQL(
            "WITH i AS (INSERT INTO {t} AS t ({cols}) OVERRIDING SYSTEM VALUE SELECT {values} FROM {undo} AS u "
            "WHERE u.action = 'insert' ON CONFLICT DO NOTHING RETURNING t.{k}::text AS id, t.xmin::text AS xmin) "
            "INSERT INTO {undone} SELECT 'insert', id, xmin FROM i"
        ).format(t=t, cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                 values=sql.SQL(", ").join(from_image(info, c, image) for c in columns), undo=UNDO, k=key,
                 undone=UNDONE)),
        Query("undone", sql.SQL("SELECT action, id, hash FROM {}").format(UNDONE)),
    ]
