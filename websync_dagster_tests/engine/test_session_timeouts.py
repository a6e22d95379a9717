"""websync owns its sessions' timeouts: whatever ``statement_timeout``, ``lock_timeout`` and
``idle_in_transaction_session_timeout`` prod's or dev's database sets, a sync behaves the same (issue 16,
item 2), on every transport."""

from __future__ import annotations

import psycopg

from websync_dagster_tests.engine.test_refusals import prod_ddl
from websync_dagster_tests.helpers import count, sync_all

TABLES = ["web_sources", "knowledge_base", "web_pages", "web_files"]
#: what a managed server or an app role often carries, made as short as can be
UNBOUNDED = "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0"
HOSTILE = ("statement_timeout = '1ms'", "lock_timeout = '1ms'", "idle_in_transaction_session_timeout = '1ms'")


def _database(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT current_database()").fetchone()[0]


def _set_on_database(conn: psycopg.Connection) -> None:
    name = _database(conn)
    for setting in HOSTILE:
        conn.execute(f'ALTER DATABASE "{name}" SET {setting}')


def _reset_database(conn: psycopg.Connection) -> None:
    conn.execute(f'ALTER DATABASE "{_database(conn)}" RESET ALL')


def test_a_sync_ignores_the_timeouts_prod_and_dev_databases_set(sync_env, prod_via):
    settings = prod_via(sync_env)
    with prod_ddl(sync_env) as prod:  # a statement of the load takes longer than prod's statement_timeout
        prod.execute("CREATE FUNCTION slow_statement() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$")
        prod.execute("CREATE TRIGGER slow_statement AFTER INSERT ON web_pages "
                     "FOR EACH STATEMENT EXECUTE FUNCTION slow_statement()")
        _set_on_database(prod)
    with sync_env.dev() as dev:
        _set_on_database(dev)
        expected = {t: count(dev, t) for t in TABLES}
    try:
        outcomes = sync_all(settings)
    finally:
        for url in (sync_env.prod_url, sync_env.dev_url):  # the test's own session sets its own timeouts too
            with psycopg.connect(url, autocommit=True, options=UNBOUNDED) as conn:
                _reset_database(conn)

    assert all(o.result.lost == 0 for o in outcomes.values())
    with sync_env.prod() as prod:
        pages = count(prod, "web_pages")
    facts = sync_env.facts
    assert outcomes["web_pages"].result.inserted > 0
    assert pages == facts.prod_counts["web_pages"] + outcomes["web_pages"].result.inserted
    assert expected["web_pages"] > 0
