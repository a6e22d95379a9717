"""What each database says about the synced tables: columns, unique keys, foreign keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from psycopg import sql

from websync_dagster.core.errors import ConfigError


class QuerySession(Protocol):
    def query(self, query: sql.Composable) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as format_type() prints it, e.g. "vector(768)", "text[]"
    not_null: bool
    has_default: bool
    generated: bool
    #: the type without its modifier ("character varying" for "character varying(12)"): what a value is cast
    #: to, so that storing it in the column checks the modifier (an explicit CAST to varchar(12) cuts the text)
    base_type: str = ""


@dataclass(frozen=True)
class UniqueKey:
    name: str
    columns: tuple[str, ...]
    primary: bool


@dataclass(frozen=True)
class ExpressionKey:
    """A unique index over expressions, or partial (``WHERE``): its key expressions and predicate as SQL
    text over the table's own column names (``pg_get_indexdef``, ``pg_get_expr``), so that they can be
    evaluated on any table with the same columns."""

    name: str
    expressions: tuple[str, ...]
    predicate: str | None
    nulls_not_distinct: bool = False


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[Column, ...]
    unique_keys: tuple[UniqueKey, ...]  # plain column keys only: what the delta export and the diff match on
    foreign_keys: tuple[ForeignKey, ...]
    expression_keys: tuple[ExpressionKey, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def primary_key(self) -> tuple[str, ...]:
        for key in self.unique_keys:
            if key.primary:
                return key.columns
        return ()


_CATALOG_QUERY = """
SELECT c.relname AS name,
  (SELECT json_agg(json_build_object(
            'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod), 'base_type', format_type(a.atttypid, NULL),
            'not_null', a.attnotnull,
            'has_default', a.atthasdef OR a.attidentity <> '', 'generated', a.attgenerated <> '')
          ORDER BY a.attnum)
     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
  (SELECT coalesce(json_agg(json_build_object(
            'name', coalesce(con.conname, ic.relname), 'primary', i.indisprimary,
            'columns', (SELECT json_agg(att.attname ORDER BY k.ord)
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute att ON att.attrelid = c.oid AND att.attnum = k.attnum))
          ORDER BY ic.relname), '[]'::json)
     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
     LEFT JOIN pg_constraint con
            ON con.conindid = i.indexrelid AND con.conrelid = c.oid AND con.contype IN ('p', 'u')
    WHERE i.indrelid = c.oid AND i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL) AS unique_keys,
  (SELECT coalesce(json_agg(json_build_object(
            'name', con.conname, 'ref_table', rc.relname,
            'columns', (SELECT json_agg(att.attname ORDER BY k.ord)
                          FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = k.attnum),
            'ref_columns', (SELECT json_agg(att.attname ORDER BY k.ord)
                              FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
                              JOIN pg_attribute att ON att.attrelid = con.confrelid AND att.attnum = k.attnum))
          ORDER BY con.conname), '[]'::json)
     FROM pg_constraint con JOIN pg_class rc ON rc.oid = con.confrelid
    WHERE con.conrelid = c.oid AND con.contype = 'f') AS foreign_keys,
  (SELECT coalesce(json_agg(json_build_object(
            'name', ic.relname,
            'expressions', (SELECT json_agg(pg_get_indexdef(i.indexrelid, k, true) ORDER BY k)
                              FROM generate_series(1, i.indnkeyatts) AS k),
            'predicate', pg_get_expr(i.indpred, i.indrelid, true),
            'nulls_not_distinct', coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false))
          ORDER BY ic.relname), '[]'::json)
     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
      AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)) AS expression_keys
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY({tables})
"""


def read_catalog(
    session: QuerySession, tables: list[str], *, side: str, require_all: bool = True
) -> dict[str, TableInfo]:
    """The catalog of ``tables`` in one database; a missing table is a ConfigError naming it, or, with
    ``require_all=False``, is left out (so that the caller can stop only that table)."""
    rows = session.query(sql.SQL(_CATALOG_QUERY).format(tables=sql.Literal(list(tables))))
    found: dict[str, TableInfo] = {}
    for row in rows:
        found[row["name"]] = TableInfo(
            name=row["name"],
            columns=tuple(Column(**c) for c in row["columns"]),
            unique_keys=tuple(
                UniqueKey(u["name"], tuple(u["columns"]), u["primary"]) for u in row["unique_keys"]
            ),
            foreign_keys=tuple(
                ForeignKey(f["name"], tuple(f["columns"]), f["ref_table"], tuple(f["ref_columns"]))
                for f in row["foreign_keys"]
            ),
            expression_keys=tuple(
                ExpressionKey(e["name"], tuple(e["expressions"]), e["predicate"], e["nulls_not_distinct"])
                for e in row["expression_keys"]
            ),
        )
    missing = [t for t in tables if t not in found]
    if missing and require_all:
        raise ConfigError(f"table {', '.join(missing)} not found in the {side} database")
    return {t: found[t] for t in tables if t in found}
