"""`websync status` shows whatever prod's web_sources has: the runbook's columns (url, status, last_crawled_at),
the reference schema's (base_url, health_status, last_crawl_at) or none of them, on real servers (prod 15)."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance
from psycopg import sql

from websync_dagster.cli import main as websync_main
from websync_dagster.engine.run import run_status
from websync_dagster_tests.conftest import SyncEnv

pytestmark = [pytest.mark.timeout(300)]

#: the reference schema's column -> the runbook's
RUNBOOK = {"base_url": "url", "health_status": "status", "last_crawl_at": "last_crawled_at"}

# prod's sources (see demo/sample_data.py), each given its last crawl here, and one more never crawled
PROD_SOURCES = {  # name -> (base_url, health_status)
    "Prod-only source": ("https://source91.example.tn", "healthy"),
    "Nom modifié en prod": ("https://source0.example.tn", "degraded"),
    "Jamais crawlée": ("https://never.example.tn", "unknown"),
    "Same site crawled in prod": ("https://source4.example.tn", "healthy"),
}
CRAWLED = {"Prod-only source": "2026-11-03 08:00:00+00", "Nom modifié en prod": "2026-11-01 12:30:15.123456+00"}
#: most recent crawl first, never crawled last (by name among them)
BY_CRAWL = ["Prod-only source", "Nom modifié en prod", "Jamais crawlée", "Same site crawled in prod"]


def _reshape(prod: psycopg.Connection, *, rename: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> None:
    """This test's prod web_sources altered (the guard's event trigger dropped first, in this database only)."""
    prod.execute("DROP EVENT TRIGGER websync_ddl_guard")
    for old, new in (rename or {}).items():
        prod.execute(sql.SQL("ALTER TABLE web_sources RENAME COLUMN {} TO {}").format(
            sql.Identifier(old), sql.Identifier(new)))
    for column in drop:
        prod.execute(sql.SQL("ALTER TABLE web_sources DROP COLUMN {}").format(sql.Identifier(column)))


@pytest.fixture
def prod_sources(sync_env15: SyncEnv) -> dict[str, str]:
    """Prod's sources with the crawl times of CRAWLED (NULL for the others); name -> id."""
    with sync_env15.prod() as prod:
        prod.execute("INSERT INTO web_sources (name, base_url, health_status, categories) "
                     "VALUES ('Jamais crawlée', 'https://never.example.tn', 'unknown', ARRAY['legislation'])")
        prod.execute("SET session_replication_role = replica")  # the guard's row triggers off, this session only
        prod.execute("UPDATE web_sources SET last_crawl_at = (%s::jsonb ->> name)::timestamptz", [json.dumps(CRAWLED)])
        ids = dict(prod.execute("SELECT name, id::text FROM web_sources").fetchall())
    assert set(ids) == set(PROD_SOURCES)
    return ids


def _expected(ids: dict[str, str], columns: dict[str, str]) -> list[dict[str, str | None]]:
    """The rows status must show, in BY_CRAWL order, under ``columns`` (reference name -> shown name)."""
    return [
        {"id": ids[name], "name": name, columns["base_url"]: PROD_SOURCES[name][0],
         columns["health_status"]: PROD_SOURCES[name][1], columns["last_crawl_at"]: CRAWLED.get(name)}
        for name in BY_CRAWL
    ]


def _as_instants(rows: list[dict], column: str) -> list[dict]:
    """The crawl column as instants (its text is in the session's time zone)."""
    return [{**r, column: r[column] and datetime.fromisoformat(r[column])} for r in rows]


def _sources(env: SyncEnv) -> list[dict]:
    counts, sources = run_status(env.settings())
    assert counts["web_sources"] == len(PROD_SOURCES)
    return sources


@pytest.mark.parametrize("shape", ["reference", "runbook"])
def test_status_shows_the_columns_prod_has_by_their_names(sync_env15, prod_sources, shape):
    columns = RUNBOOK if shape == "runbook" else {c: c for c in RUNBOOK}
    if shape == "runbook":
        with sync_env15.prod() as prod:
            _reshape(prod, rename=RUNBOOK)
    sources = _sources(sync_env15)
    crawl = columns["last_crawl_at"]
    assert all(isinstance(r[crawl], str) for r in sources if r[crawl] is not None)  # as text
    assert _as_instants(sources, crawl) == _as_instants(_expected(prod_sources, columns), crawl)


def test_without_a_crawl_column_the_sources_are_by_name(sync_env15, prod_sources):
    with sync_env15.prod() as prod:
        _reshape(prod, rename={"base_url": "url"}, drop=("health_status", "last_crawl_at"))
    assert _sources(sync_env15) == [
        {"id": prod_sources[name], "name": name, "url": PROD_SOURCES[name][0]} for name in sorted(PROD_SOURCES)
    ]


def test_a_table_with_none_of_the_columns_still_lists_its_ids(sync_env15, prod_sources):
    with sync_env15.prod() as prod:
        _reshape(prod, drop=("name", "base_url", "health_status", "last_crawl_at"))
    assert _sources(sync_env15) == [{"id": i} for i in sorted(prod_sources.values())]


def test_websync_status_json_shows_the_runbooks_columns(sync_env15, prod_sources, capsys):
    with sync_env15.prod() as prod:
        _reshape(prod, rename=RUNBOOK)
    assert websync_main(["status", "--json", "--env-file", "/dev/null"]) == 0
    rows = {r["table"]: r for r in json.loads(capsys.readouterr().out)}
    assert {t: r["prod rows"] for t, r in rows.items()} == {**sync_env15.facts.prod_counts, "web_sources": 4}
    sources = rows["web_sources"]["sources"]
    assert _as_instants(sources, "last_crawled_at") == _as_instants(_expected(prod_sources, RUNBOOK),
                                                                    "last_crawled_at")
    # the status step's metadata (the UI) names the same columns
    instance = DagsterInstance.from_config(str(sync_env15.dagster_home))
    run = instance.get_runs(limit=1)[0]
    outputs = [e.dagster_event.step_output_data
               for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_OUTPUT)]
    table = next(o.metadata["web_sources"].value for o in outputs if o.output_name == "result")
    assert table.splitlines()[0] == "| id | name | url | status | last_crawled_at |"
    assert "Jamais crawlée" in table
