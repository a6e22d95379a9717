"""The temp tables of a staged unit (dropped at its commit), by name; the blocks in sql/ name them too."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

#: the unit's rows as sent, all text, numbered ``_ws_row`` in file order
STAGE = sql.Identifier("pg_temp", "_ws_stage")
#: the rows cast to prod's types and checked by its constraints; the clash passes delete from it
PROBE = sql.Identifier("pg_temp", "_ws_probe")
#: rows prod refuses: ``_ws_row``, id and prod's reason
REJECTS = sql.Identifier("pg_temp", "_ws_rejects")
#: rows left out on a unique key: key name and id
SKIPPED = sql.Identifier("pg_temp", "_ws_skipped")
#: references set to NULL: column and count
NULLED = sql.Identifier("pg_temp", "_ws_nulled")
#: how many rows the insert block inserted
INSERTED = sql.Identifier("pg_temp", "_ws_inserted")
#: the key of each row the insert block inserted (for the run's manifest)
LANDED = sql.Identifier("pg_temp", "_ws_landed")


def column_list(names: Iterable[str], prefix: str | None = None) -> sql.Composed:
    """``a, b`` (or ``p.a, p.b`` with a prefix), quoted."""
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
