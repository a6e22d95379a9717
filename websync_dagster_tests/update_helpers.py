"""Shared set-up of the update-path and undo tests: rows made newer on either side, and a prod guard that lets
UPDATE and DELETE touch only the rows a test names."""

from __future__ import annotations

import psycopg
from psycopg import sql

#: replaces conftest.PROD_GUARD's row guard: UPDATE or DELETE of a row is allowed only when the test listed it
ALLOWING_GUARD = """
CREATE TABLE IF NOT EXISTS websync_guard_allowed (tbl text, op text, id text);
CREATE OR REPLACE FUNCTION websync_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (
      SELECT 1 FROM websync_guard_allowed a WHERE a.tbl = TG_TABLE_NAME AND a.op = TG_OP AND a.id = OLD.id::text) THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  RAISE EXCEPTION 'websync guard: % on % is forbidden', TG_OP, TG_TABLE_NAME;
END $$;
"""


def prod_ddl(prod_url: str, *statements: str) -> None:
    with psycopg.connect(prod_url, autocommit=True) as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        for statement in statements:
            prod.execute(statement)
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")


def allow(prod_url: str, table: str, op: str, ids: list[str]) -> None:
    """Let the guard pass ``op`` (UPDATE or DELETE) on these rows of ``table``."""
    with psycopg.connect(prod_url, autocommit=True) as prod:
        prod.execute("INSERT INTO websync_guard_allowed SELECT %s, %s, unnest(%s::text[])", [table, op, ids])


def arm_allowing_guard(prod_url: str) -> None:
    prod_ddl(prod_url, ALLOWING_GUARD)


def ids_of(conn: psycopg.Connection, table: str, n: int, *, offset: int = 0) -> list[str]:
    return [r[0] for r in conn.execute(sql.SQL("SELECT id::text FROM {} ORDER BY id LIMIT %s OFFSET %s").format(
        sql.Identifier(table)), [n, offset]).fetchall()]


def recrawl(dev: psycopg.Connection, table: str, ids: list[str], column: str, text: str) -> None:
    """Dev re-crawls these rows: new text (dev's trigger sets updated_at to now())."""
    dev.execute(sql.SQL("UPDATE {} SET {} = %s || id::text WHERE id = ANY(%s::uuid[])").format(
        sql.Identifier(table), sql.Identifier(column)), [text, ids])


def edit_in_prod(prod_url: str, table: str, ids: list[str], column: str, text: str) -> None:
    """Prod edits these rows itself, later than any dev change (its guard and triggers held off for the edit)."""
    with psycopg.connect(prod_url, autocommit=True) as prod:
        prod.execute("SET session_replication_role = replica")
        prod.execute(sql.SQL("UPDATE {} SET {} = %s || id::text, updated_at = now() + interval '1 day' "
                             "WHERE id = ANY(%s::uuid[])").format(sql.Identifier(table), sql.Identifier(column)),
                     [text, ids])


def checksum(conn: psycopg.Connection, table: str, columns: list[str] | None = None) -> str:
    """One hash of every row of ``table`` (or of ``columns`` of each), in id order."""
    row = sql.SQL("t::text") if columns is None else sql.SQL("ROW({})::text").format(
        sql.SQL(", ").join(sql.Identifier("t", c) for c in columns))
    return conn.execute(sql.SQL("SELECT md5(coalesce(string_agg(md5({}), '' ORDER BY id), '')) FROM {} AS t").format(
        row, sql.Identifier(table))).fetchone()[0]
