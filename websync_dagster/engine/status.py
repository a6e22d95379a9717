"""Prod's state: row counts and the crawl sources."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from websync_dagster.engine.catalog import QuerySession


def prod_counts(session: QuerySession, tables: Sequence[str]) -> dict[str, int]:
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {} AS name, count(*) AS n FROM {}").format(sql.Literal(t), sql.Identifier(t)) for t in tables
    )
    return {row["name"]: row["n"] for row in session.query(query)}


def web_sources_detail(session: QuerySession) -> list[dict[str, Any]]:
    return session.query(sql.SQL(
        "SELECT id::text AS id, name, base_url, health_status, last_crawl_at::text AS last_crawl_at "
        "FROM web_sources ORDER BY name"
    ))
