"""The bytes a run sent over SSH count every connection of the transport: a second prod session (the lock
watcher's, opened while a load waits) or a reconnect never makes the count go back, so a table's
``wire_bytes_sent`` (the count after its load minus the count before) is never negative or short."""

from __future__ import annotations

import secrets

import pytest
from psycopg import sql

from websync_dagster.transport import make_transport
from websync_dagster.transport.base import Query
from websync_dagster_tests.transport.test_ssh import _psql_env, _tunnel_env


@pytest.mark.parametrize("transport", ["ssh_tunnel", "ssh_psql"])
def test_a_second_session_and_a_reconnect_only_add_to_the_bytes_sent(sync_env, vps, transport):
    env = _tunnel_env(sync_env, vps) if transport == "ssh_tunnel" else _psql_env(sync_env, vps)
    prod = make_transport(sync_env.settings(**env))
    big = sql.SQL("SELECT length({}) AS n").format(sql.Literal(secrets.token_hex(100_000)))  # hex: ~2x smaller
    with prod.session() as main:
        main.run_transaction([Query("big", big)])
        before = prod.wire_bytes_sent()
        assert before is not None and before > 50_000
        with prod.session() as side:  # the lock watcher's session, opened while the main one is in use
            side.run_transaction([Query("small", sql.SQL("SELECT 1 AS one"))])
            assert prod.wire_bytes_sent() >= before
        after_side = prod.wire_bytes_sent()
        assert after_side >= before
        main.run_transaction([Query("big", big)])
        assert prod.wire_bytes_sent() > after_side + 50_000
    closed = prod.wire_bytes_sent()
    with prod.session() as again:  # a reconnect: a new connection, the old one's bytes still counted
        again.run_transaction([Query("small", sql.SQL("SELECT 1 AS one"))])
        assert prod.wire_bytes_sent() > closed
