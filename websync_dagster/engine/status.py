"""Prod's state: row counts and the crawl sources."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from websync_dagster.engine.catalog import QuerySession, read_catalog

#: the web_sources columns status shows, under their own names, each one that prod's table has: the runbook's
#: (url, status, last_crawled_at) and the reference schema's (base_url, health_status, last_crawl_at)
SOURCE_COLUMNS = ("id", "name", "url", "base_url", "status", "health_status", "last_crawled_at", "last_crawl_at")
#: the sources are listed by the first of these that exists, most recent first
CRAWL_COLUMNS = ("last_crawled_at", "last_crawl_at")
#: then (or without a crawl column) by these
TIE_COLUMNS = ("name", "id")


def prod_counts(session: QuerySession, tables: Sequence[str]) -> dict[str, int]:
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {} AS name, count(*) AS n FROM {}").format(sql.Literal(t), sql.Identifier(t)) for t in tables
    )
    return {row["name"]: row["n"] for row in session.query(query)}


def web_sources_detail(session: QuerySession) -> list[dict[str, Any]]:
    """Prod's ``web_sources``, one dict per source holding each of SOURCE_COLUMNS that the table has (as text),
    the most recently crawled first (never crawled last). Which columns exist is read from prod's catalog,
    so that a prod with the runbook's columns, the reference schema's or neither is shown, not an error; no
    table, no sources."""
    catalog = read_catalog(session, ["web_sources"], side="prod", require_all=False)
    if "web_sources" not in catalog:
        return []
    present = set(catalog["web_sources"].column_names)
    shown = [c for c in SOURCE_COLUMNS if c in present]
    if not shown:
        return []
    # qualified (t.<column>): ORDER BY a bare name would sort the text output column of that name
    crawl = [sql.SQL("t.{} DESC NULLS LAST").format(sql.Identifier(c)) for c in CRAWL_COLUMNS if c in present]
    ties = [sql.SQL("t.{}").format(sql.Identifier(c)) for c in TIE_COLUMNS if c in present]
    query = sql.SQL("SELECT {columns} FROM web_sources AS t{order}").format(
        columns=sql.SQL(", ").join(
            sql.SQL("t.{}::text AS {}").format(sql.Identifier(c), sql.Identifier(c)) for c in shown
        ),
        order=sql.SQL(" ORDER BY ") + sql.SQL(", ").join([*crawl[:1], *ties]) if crawl or ties else sql.SQL(""),
    )
    return session.query(query)
