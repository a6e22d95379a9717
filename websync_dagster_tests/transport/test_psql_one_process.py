"""ssh_psql with one psql per session: a whole run is served by one psql on one exec channel (a ``docker exec``
and a login per run, not per statement), an error rolls back only its transaction and the next one gets a new
psql, and ``WEBSYNC_PROD_PSQL_PER_TRANSACTION=1`` keeps the older way. Real sshd, real prod behind it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from websync_dagster.core.settings import Settings
from websync_dagster.transport.base import Query, Statement
from websync_dagster.transport.psql import SshPsqlTransport
from websync_dagster.transport.psql_errors import PsqlError
from websync_dagster_tests.conftest import CONTAINER, SyncEnv, Vps
from websync_dagster_tests.helpers import sync_all


def _counted_psql(sync_env: SyncEnv, vps: Vps, tmp_path: Path, **extra: str) -> tuple[Settings, Path]:
    """Settings whose remote psql command notes each start of psql in a file, and that file."""
    starts = tmp_path / "psql-starts"
    starts.touch()
    starts.chmod(0o666)
    wrapper = tmp_path / "counted-psql"
    docker = vps.bin_dir / "docker"
    wrapper.write_text(f'#!/bin/sh\necho start >> {starts}\nexec "{docker}" exec -i {CONTAINER} psql "$@"\n')
    wrapper.chmod(0o755)
    tmp_path.chmod(0o755)
    database = sync_env.prod_url.rsplit("/", 1)[1]
    command = f"{wrapper} -U postgres -d {database}"
    settings = sync_env.settings(**vps.env(WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL=command, **extra))
    return settings, starts


def _starts(starts: Path) -> int:
    return len(starts.read_text().splitlines())


def test_a_whole_sync_is_served_by_one_psql_per_prod_session(sync_env, vps, tmp_path):
    settings, starts = _counted_psql(sync_env, vps, tmp_path)
    runs = sync_all(settings)  # raises the first table's error
    with psycopg.connect(sync_env.prod_url) as prod:
        pages = prod.execute("SELECT count(*) FROM web_pages").fetchone()[0]
    assert runs["web_pages"].result.inserted > 0 and pages >= runs["web_pages"].result.inserted
    one = _starts(starts)
    starts.write_text("")
    per_transaction, _ = _counted_psql(sync_env, vps, tmp_path, WEBSYNC_PROD_PSQL_PER_TRANSACTION="1")
    again = sync_all(per_transaction)
    assert all(outcome.result.inserted == 0 for outcome in again.values())
    # the older way starts a psql for every query and transaction of a run, even one with nothing to ship
    assert 1 <= one <= 2 < _starts(starts), (one, _starts(starts))


def test_an_error_rolls_back_its_transaction_and_the_next_one_gets_a_new_psql(sync_env, vps, tmp_path):
    settings, starts = _counted_psql(sync_env, vps, tmp_path)
    with SshPsqlTransport(settings).session() as session:
        assert session.one_psql
        (first,) = session.query(sql.SQL("SELECT pg_backend_pid() AS pid"))
        with pytest.raises(PsqlError) as failed:
            session.run_transaction([
                Statement(sql.SQL("CREATE TEMP TABLE websync_one_psql (n int)")),
                Statement(sql.SQL("INSERT INTO websync_one_psql VALUES (1 / 0)")),
            ])
        assert failed.value.sqlstate == "22012"  # prod's code for it, read from psql's output
        (second,) = session.query(sql.SQL("SELECT pg_backend_pid() AS pid"))
        assert second != first  # a new psql, hence a new backend: the failed transaction went with the old one
        results = session.run_transaction([Query("a", sql.SQL("SELECT 1 AS one")),
                                           Query("b", sql.SQL("SELECT 2 AS two"))])
        assert results == {"a": [{"one": 1}], "b": [{"two": 2}]}
    assert _starts(starts) == 2


def test_a_psql_that_prod_ended_between_transactions_is_a_lost_link_and_the_next_transaction_works(
        sync_env, vps, tmp_path):
    settings, starts = _counted_psql(sync_env, vps, tmp_path)
    with SshPsqlTransport(settings).session() as session:
        (backend,) = session.query(sql.SQL("SELECT pg_backend_pid() AS pid"))
        with psycopg.connect(sync_env.prod_url, autocommit=True) as prod:
            prod.execute("SELECT pg_terminate_backend(%s)", [backend["pid"]])
        with pytest.raises(PsqlError) as lost:
            session.query(sql.SQL("SELECT 1 AS one"))
        assert session.connection_lost(lost.value)
        assert session.query(sql.SQL("SELECT 1 AS one")) == [{"one": 1}]
    assert _starts(starts) == 2
