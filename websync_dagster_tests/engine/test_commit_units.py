"""A table committed in many units lands exactly what one transaction lands, on every transport: the same
rows, the same rejects with the same reasons, the same counts (see engine/units.py)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import psycopg
import pytest

from websync_dagster.engine.export_load import LoadOutcome
from websync_dagster_tests.conftest import SyncEnv, fresh_database
from websync_dagster_tests.helpers import sync_all

TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")
#: one row per unit: each unit's time (1 ns) is up by its first row end
EVERY_ROW = "0.000000001"


def second_pair(sync_env: SyncEnv, servers, tmp_path: Path) -> SyncEnv:
    """Another fresh dev/prod pair, with the same sample data and the same environment otherwise."""
    suffix = uuid.uuid4().hex[:12]
    dev_url = fresh_database(servers.dev, f"dev_units_{suffix}")
    prod_url = fresh_database(servers.prod, f"prod_units_{suffix}")
    exports = tmp_path / "exports_units"
    env = {**sync_env.env, "WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url,
           "WEBSYNC_EXPORT_DIR": str(exports), "WEBSYNC_COMMIT_EVERY_S": EVERY_ROW}
    return dataclasses.replace(sync_env, dev_url=dev_url, prod_url=prod_url, export_dir=exports, env=env)


def landed(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        return {t: {r[0] for r in conn.execute(f"SELECT id::text FROM {t}")} for t in TABLES}  # noqa: S608


def figures(outcome: LoadOutcome) -> dict:
    r = outcome.result
    return dict(before=r.before, after=r.after, shipped=r.shipped, inserted=r.inserted, rejected=r.rejected,
                already_present=r.already_present, skipped=r.skipped, nulled=r.nulled, lost=r.lost)


def rejects(outcome: LoadOutcome) -> list[tuple[str, str]]:
    path = outcome.result.reject_file
    if path is None:
        return []
    return sorted((r["id"], r["reason"]) for r in map(json.loads, Path(path).read_text().splitlines()))


@pytest.mark.parametrize("prod_via", ["direct", "ssh_tunnel"], indirect=True)  # ssh_psql: in test_faults.py
def test_a_sync_in_one_row_units_lands_what_one_transaction_per_table_lands(sync_env, servers, prod_via, tmp_path):
    one = sync_all(prod_via(sync_env))
    units_env = second_pair(sync_env, servers, tmp_path)
    units = sync_all(prod_via(units_env))
    assert landed(units_env.prod_url) == landed(sync_env.prod_url)
    for table in TABLES:
        assert figures(units[table]) == figures(one[table]), table
        assert rejects(units[table]) == rejects(one[table]), table
        assert one[table].result.commits <= 1, table
    assert units["knowledge_base"].result.commits == 1  # it references itself: one unit, whatever the setting
    for table in ("web_pages", "web_files"):
        assert units[table].result.commits == units[table].export.rows > 10, table
