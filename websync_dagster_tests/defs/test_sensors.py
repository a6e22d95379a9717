"""The dev-vs-prod diff (checksum bisection) and dev_prod_diff_sensor, evaluated for real."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from dagster import AssetObservation, DagsterInstance, build_sensor_context
from psycopg import sql

from websync_dagster.definitions import defs
from websync_dagster.defs.resources import WebsyncResource
from websync_dagster.engine.diff import LEAF_ROWS, diff_table, hashed_columns
from websync_dagster.engine.planning import plan_tables
from websync_dagster.engine.run import run_diff
from websync_dagster.transport.direct import PsycopgSession
from websync_dagster_tests.helpers import sync_all
from websync_dagster_tests.update_helpers import allow, arm_allowing_guard, ids_of, recrawl

TABLES = ["web_sources", "knowledge_base", "web_pages", "web_files"]


def _brute_force(dev: psycopg.Connection, prod: psycopg.Connection, table: str, columns: list[str]) -> tuple:
    """Download every row of both sides and compare: what the bisection must find without doing this."""
    for conn in (dev, prod):
        conn.execute("SET TimeZone = 'UTC'")
    query = sql.SQL("SELECT id::text, ROW({})::text FROM {} AS t").format(
        sql.SQL(", ").join(sql.Identifier("t", c) for c in columns), sql.Identifier(table))
    d = {i: hashlib.md5(v.encode()).hexdigest() for i, v in dev.execute(query).fetchall()}
    p = {i: hashlib.md5(v.encode()).hexdigest() for i, v in prod.execute(query).fetchall()}
    return (len(d), len(p), len(d.keys() - p.keys()), len(p.keys() - d.keys()),
            sum(1 for i in d.keys() & p.keys() if d[i] != p[i]))


def _figures(diff) -> tuple:
    return diff.dev_rows, diff.prod_rows, diff.missing_in_prod, diff.only_in_prod, diff.changed


def test_bisection_finds_exactly_what_a_full_comparison_finds(sync_env):
    sync_all(sync_env.settings())
    source = sync_env.facts.already_in_prod["web_sources"][0]
    with sync_env.dev() as dev:
        dev.execute(  # enough new rows to need several levels of bisection
            "INSERT INTO web_pages (id, web_source_id, url, url_hash, extracted_text) "
            "SELECT gen_random_uuid(), %s, 'https://n.example/' || i, md5('n' || i), 'texte ' || i "
            "FROM generate_series(1, %s) AS i", [source, 40 * LEAF_ROWS])
        dev.execute("UPDATE web_pages SET title = title || ' (modifié)' WHERE id IN "
                    "(SELECT id FROM web_pages WHERE url LIKE '%%/page/1_' ORDER BY id LIMIT 3)")
    with sync_env.dev() as dev, sync_env.prod() as prod:
        plans = plan_tables(PsycopgSession(dev), PsycopgSession(prod), TABLES)
        for table, plan in plans.items():
            diff = diff_table(PsycopgSession(dev), PsycopgSession(prod), plan)
            assert _figures(diff) == _brute_force(dev, prod, table, hashed_columns(plan)), table
        pages = diff_table(PsycopgSession(dev), PsycopgSession(prod), plans["web_pages"])
        assert pages.missing_in_prod >= 40 * LEAF_ROWS and pages.changed >= 3
        assert pages.ids_compared < pages.dev_rows  # never the whole table


def test_identical_tables_cost_one_query_per_side(sync_env):
    with sync_env.dev() as dev, sync_env.dev() as same:  # dev against itself, through two connections
        plans = plan_tables(PsycopgSession(dev), PsycopgSession(same), TABLES)
        for plan in plans.values():
            diff = diff_table(PsycopgSession(dev), PsycopgSession(same), plan)
            assert diff.in_sync and diff.queries == 1 and diff.ids_compared == 0


def _evaluate(sync_env, cursor=None):
    """One real evaluation of the sensor (resources set up and torn down as the daemon does), with the resource of
    the code location as Dagster loads it (its settings read from the environment then)."""
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    loaded = defs()
    websync = loaded.resources["websync"]
    assert isinstance(websync, WebsyncResource)
    with build_sensor_context(instance=instance, cursor=cursor, resources={"websync": websync}) as context:
        return loaded.resolve_sensor_def("dev_prod_diff_sensor")(context)


def test_sensor_records_the_drift_and_keeps_a_cursor(sync_env, monkeypatch):
    monkeypatch.delenv("WEBSYNC_DIFF_AUTO_SYNC", raising=False)
    result = _evaluate(sync_env)
    observations = [e for e in result.asset_events if isinstance(e, AssetObservation)]
    assert {o.asset_key.to_user_string() for o in observations} == {f"{t}/prod_upserted" for t in TABLES}
    pages = next(o for o in observations if o.asset_key.path[0] == "web_pages")
    expected = run_diff(sync_env.settings())
    figures = next(d for d in expected if d.table == "web_pages")
    assert pages.metadata["missing_in_prod"].value == figures.missing_in_prod > 0
    assert isinstance(pages.metadata["changed"].value, int)
    assert f"web_pages: {figures.missing_in_prod} missing in prod" in result.skip_reason.skip_message
    assert not result.run_requests
    assert '"drift"' in result.cursor


def test_sensor_survives_an_unreachable_prod(sync_env, monkeypatch):
    monkeypatch.setenv("WEBSYNC_PROD_URL", "postgresql://nobody:pw@127.0.0.1:1/none")
    result = _evaluate(sync_env, cursor="previous")
    assert "cannot compute the dev/prod diff: cannot connect to prod database" in result.skip_reason.skip_message
    assert result.cursor == "previous" and not result.run_requests


def test_auto_sync_requests_one_run_per_drift(sync_env, monkeypatch):
    monkeypatch.setenv("WEBSYNC_DIFF_AUTO_SYNC", "1")
    first = _evaluate(sync_env)
    again = _evaluate(sync_env, cursor=first.cursor)
    assert len(first.run_requests) == 1
    assert first.run_requests[0].run_key == again.run_requests[0].run_key  # same drift, same key
    sync_all(sync_env.settings())  # the drift changes: fewer rows missing (prod refuses a few)
    after = _evaluate(sync_env, cursor=first.cursor)
    assert len(after.run_requests) == 1
    assert after.run_requests[0].run_key != first.run_requests[0].run_key


def test_auto_sync_requests_a_run_for_rows_newer_in_dev_only_in_a_table_opted_in(sync_env, monkeypatch):
    monkeypatch.setenv("WEBSYNC_DIFF_AUTO_SYNC", "1")
    sync_all(sync_env.settings())
    plain = _evaluate(sync_env)
    monkeypatch.setenv("WEBSYNC_UPDATE_NEWER", "web_pages")
    opted = _evaluate(sync_env)
    with sync_env.dev() as dev:  # dev re-crawls three pages: newer in dev
        dev.execute("UPDATE web_pages SET extracted_text = extracted_text || ' (re-crawled)' WHERE id IN "
                    "(SELECT id FROM web_pages ORDER BY id LIMIT 3)")
    recrawled = _evaluate(sync_env, cursor=opted.cursor)
    pages = next(o for o in recrawled.asset_events if o.asset_key.path[0] == "web_pages")
    assert (pages.metadata["newer_in_dev"].value, pages.metadata["newer_in_prod"].value) == (3, 0)
    assert recrawled.run_requests[0].run_key != opted.run_requests[0].run_key  # a new drift: a new run
    monkeypatch.delenv("WEBSYNC_UPDATE_NEWER")
    insert_only = _evaluate(sync_env, cursor=plain.cursor)
    assert insert_only.run_requests[0].run_key == plain.run_requests[0].run_key  # nothing a sync would ship
    assert "newer_in_dev" not in next(o for o in insert_only.asset_events if o.asset_key.path[0] == "web_pages"
                                      ).metadata


def test_after_an_update_prod_stamped_the_sensor_reads_those_rows_version_only_and_requests_no_new_run(
        sync_env, monkeypatch):
    monkeypatch.setenv("WEBSYNC_DIFF_AUTO_SYNC", "1")
    monkeypatch.setenv("WEBSYNC_UPDATE_NEWER", "web_pages")
    sync_all(sync_env.settings())
    before = _evaluate(sync_env)
    pages_before = next(o for o in before.asset_events if o.asset_key.path[0] == "web_pages").metadata
    with sync_env.dev() as dev:  # dev re-crawls three pages; the sync updates them, prod's trigger stamps updated_at
        recrawled = ids_of(dev, "web_pages", 3)
        recrawl(dev, "web_pages", recrawled, "extracted_text", "re-crawled ")
    arm_allowing_guard(sync_env.prod_url)
    allow(sync_env.prod_url, "web_pages", "UPDATE", recrawled)
    sync_all(sync_env.settings(WEBSYNC_UPDATE_NEWER="web_pages"))
    after = _evaluate(sync_env, cursor=before.cursor)
    pages = next(o for o in after.asset_events if o.asset_key.path[0] == "web_pages").metadata
    assert (pages["version_only"].value, pages["newer_in_prod"].value, pages["newer_in_dev"].value) == (3, 0, 0)
    assert pages["changed"].value == pages_before["changed"].value  # the stamped rows are not changed
    # the same drift as before the re-crawl: the same run key, no new run for rows prod holds as dev does
    assert after.run_requests[0].run_key == before.run_requests[0].run_key


@pytest.mark.parametrize("mode", ["diff"])
def test_diff_job_and_cli_print_the_same_table(sync_env, capsys, mode):
    from websync_dagster.cli import main as websync_main
    from websync_dagster.defs.ops import DIFF_COLUMNS

    assert websync_main([mode, "--env-file", "/dev/null", "--quiet"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == list(DIFF_COLUMNS)
    for d in run_diff(sync_env.settings()):
        line = next(x.split() for x in out.splitlines() if x.split()[0] == d.table)
        assert line == [d.table, *(str(v) for v in (d.dev_rows, d.prod_rows, d.missing_in_prod, d.only_in_prod,
                                                     d.changed))]
