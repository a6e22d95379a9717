"""PostgreSQL 15, prod's major version (Debian's server), as the tests' prod: it starts, and a sync lands on it."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from websync_dagster.demo.postgres import SYSTEM_INSTALLS
from websync_dagster_tests.conftest import Servers, SyncEnv, has_pgvector
from websync_dagster_tests.helpers import count, rows_by_id, sync_all, table_snapshot

pytestmark = [pytest.mark.timeout(300)]

TABLES = ["web_sources", "knowledge_base", "web_pages", "web_files"]


def test_the_pg15_server_is_debians_15(servers15: Servers) -> None:
    prod = servers15.prod
    assert prod.version == 15 and prod.bin_dir == SYSTEM_INSTALLS / "15" / "bin"
    with psycopg.connect(prod.url("tpl")) as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("15")
        # the sample schema and the armed guard, as on the usual prod
        assert count(conn, "web_sources") == servers15.facts.prod_counts["web_sources"]
        assert conn.execute("SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'websync_ddl_guard'").fetchone()
        embedding = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'knowledge_base'::regclass AND attname = 'embedding'"
        ).fetchone()
        assert embedding == ("vector(768)",)


def test_a_full_sync_lands_on_pg15(sync_env15: SyncEnv) -> None:
    facts = sync_env15.facts
    with sync_env15.prod() as prod:
        assert prod.execute("SHOW server_version").fetchone()[0].startswith("15")
        before = {t: table_snapshot(prod, t) for t in TABLES}
    outcomes = sync_all(sync_env15.settings())
    with sync_env15.prod() as prod, sync_env15.dev() as dev:
        for table in TABLES:
            result = outcomes[table].result
            assert result.before == facts.prod_counts[table], table
            assert result.inserted > 0 and result.lost == 0, table
            assert result.after == count(prod, table) == result.before + result.inserted, table
            after = table_snapshot(prod, table)
            assert {i: after[i] for i in before[table]} == before[table], f"{table}: a prod row changed"
        # the document with the tricky text and a 768-dimension embedding, as dev has it (but the overrides)
        plan = outcomes["knowledge_base"].plan
        columns = [c for c in plan.shipped if c not in plan.overrides]
        assert "embedding" in columns and "full_text" in columns
        tricky = [facts.tricky_kb_id]
        assert rows_by_id(prod, "knowledge_base", tricky, columns) == rows_by_id(dev, "knowledge_base", tricky, columns)
        # the rows prod 15 refuses are the ones the usual prod refuses, for the same reasons
        kb = outcomes["knowledge_base"].result
        assert kb.reject_file is not None
        rejects = {r["id"]: r for r in map(json.loads, Path(kb.reject_file).read_text().splitlines())}
        expected = {i: why for i, why in facts.rejected.items() if why != "web_source_id"}
        assert set(rejects) == set(expected)
        for dev_id, keyword in expected.items():
            assert keyword in rejects[dev_id]["reason"], rejects[dev_id]["reason"]
        if not has_pgvector(prod):
            assert "expected_768_dimensions" in rejects[next(i for i, w in expected.items() if w == "768")]["reason"]
    second = sync_all(sync_env15.settings())
    assert all(outcome.result.inserted == 0 for outcome in second.values())
