"""How a prod row is fingerprinted and kept: its hash (``md5`` of the row's text form) and its image (each column's
text form, by name), both read under the same fixed session settings so that they do not depend on the session
(``TimeZone`` changes a timestamptz's text, ``extra_float_digits`` a float's).

The manifest records each row a run inserted or updated with its hash as the run left it; undo acts on a row only
while prod still holds it with that hash. The before-image file keeps each updated row's image; undo restores it
column by column with prod's own input functions (``(image->>'column')::type``), which give back the same values.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from websync_dagster.engine.catalog import TableInfo
from websync_dagster.transport.base import Statement

_FIXED = (("TimeZone", "UTC"), ("DateStyle", "ISO, YMD"), ("IntervalStyle", "postgres"),
          ("extra_float_digits", "1"), ("bytea_output", "hex"))
#: jsonb_build_object takes at most 100 arguments: a wide table's image is built in parts joined with ||
_PER_PART = 50


def fixed_text_forms() -> Statement:
    """For the rest of the transaction, the settings under which hashes and images are read."""
    return Statement(sql.SQL("SELECT {}").format(sql.SQL(", ").join(
        sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value)) for name, value in _FIXED)))


def row_hash(alias: str) -> sql.Composed:
    """The hash of the row ``alias`` (a table's alias in the query), as text."""
    return sql.SQL("md5({}::text)").format(sql.Identifier(alias))


def row_image(columns: Sequence[str], alias: str) -> sql.Composable:
    """A jsonb object of each column's text form (NULL as JSON null) of the row ``alias``."""
    parts = []
    for start in range(0, len(columns), _PER_PART):
        pairs = [sql.SQL("{}, {}::text").format(sql.Literal(c), sql.Identifier(alias, c))
                 for c in columns[start:start + _PER_PART]]
        parts.append(sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(pairs)))
    return sql.SQL(" || ").join(parts) if parts else sql.SQL("'{}'::jsonb")


def from_image(info: TableInfo, column: str, image: sql.Composable) -> sql.Composed:
    """The value of ``column`` read back from an image (a jsonb expression) with the column's input function."""
    return sql.SQL("({} ->> {})::{}").format(image, sql.Literal(column), sql.SQL(info.column(column).type))


def writable_columns(info: TableInfo) -> list[str]:
    """The columns a restore or re-insert writes: all but the ones prod generates."""
    return [c.name for c in info.columns if not c.generated]


def key_array(ids: Sequence[str], key_type: str) -> sql.Composed:
    """``ids`` (text) as an array of the key's type, so that ``key = ANY(...)`` finds the rows by the key's index."""
    return sql.SQL("CAST({} AS {}[])").format(sql.Literal(list(ids)), sql.SQL(key_type))


def images_query(table: str, key: str, key_type: str, ids: Sequence[str], columns: Sequence[str], *,
                 with_hash: bool = False, with_xmin: bool = False) -> sql.Composed:
    """The rows of ``ids``: ``id``, (``hash``), (``xmin``) and ``row``, the image of ``columns``; to be read under
    ``fixed_text_forms``."""
    extra = [sql.SQL("{} AS hash").format(row_hash("t"))] if with_hash else []
    extra += [sql.SQL("t.xmin::text AS xmin")] if with_xmin else []
    return sql.SQL("SELECT t.{k}::text AS id, {extra}{image} AS row FROM {t} AS t WHERE t.{k} = ANY({ids})").format(
        k=sql.Identifier(key), extra=sql.SQL("").join(sql.SQL("{}, ").format(e) for e in extra),
        image=row_image(columns, "t"), t=sql.Identifier(table), ids=key_array(ids, key_type))

