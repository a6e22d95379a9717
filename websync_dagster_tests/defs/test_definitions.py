"""The code location as Dagster loads it, without a server: groups that name the tables, the freshness
expected of each prod load, and options read when the location loads (never at import)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from dagster import AssetKey

from websync_dagster.core.tables import DEFAULT_TABLES
from websync_dagster.definitions import defs

PROD_KEYS = [AssetKey([t, "prod_upserted"]) for t in DEFAULT_TABLES]


def _specs(definitions) -> dict[AssetKey, object]:
    assets = definitions.resolve_assets_def(PROD_KEYS[0])
    return {spec.key: spec for spec in assets.specs}


def test_each_tables_assets_are_in_a_group_named_after_the_table():
    specs = _specs(defs())
    for table in DEFAULT_TABLES:
        assert specs[AssetKey([table, "export"])].group_name == table
        assert specs[AssetKey([table, "prod_upserted"])].group_name == table
    assert specs[AssetKey(["prod", "reindex_requested"])].group_name == "prod"


def test_each_prod_load_warns_after_26_hours_and_fails_after_50_by_default(monkeypatch):
    for name in ("WEBSYNC_FRESHNESS_WARN_H", "WEBSYNC_FRESHNESS_FAIL_H"):
        monkeypatch.delenv(name, raising=False)
    specs = _specs(defs())
    for key in PROD_KEYS:
        policy = specs[key].freshness_policy
        assert policy.warn_window.to_timedelta() == timedelta(hours=26)
        assert policy.fail_window.to_timedelta() == timedelta(hours=50)
    assert specs[AssetKey(["web_pages", "export"])].freshness_policy is None


def test_the_freshness_windows_and_the_tables_are_read_when_the_location_loads(monkeypatch):
    monkeypatch.setenv("WEBSYNC_FRESHNESS_WARN_H", "2")
    monkeypatch.setenv("WEBSYNC_FRESHNESS_FAIL_H", "6")
    monkeypatch.setenv("WEBSYNC_TABLES", "web_sources")
    loaded = defs()
    policy = _specs(loaded)[PROD_KEYS[0]].freshness_policy
    assert policy.warn_window.to_timedelta() == timedelta(hours=2)
    selected = loaded.resolve_job_def("websync_job").asset_layer.selected_asset_keys
    assert AssetKey(["web_sources", "prod_upserted"]) in selected
    assert AssetKey(["web_pages", "prod_upserted"]) not in selected


@pytest.mark.parametrize(("name", "value"), [
    ("WEBSYNC_FRESHNESS_WARN_H", "60"), ("WEBSYNC_NIGHTLY_CRON", "every night"), ("WEBSYNC_TABLES", "web_pagez")])
def test_a_bad_value_still_loads_the_location_with_the_defaults_and_says_so(monkeypatch, caplog, name, value):
    monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="websync"):
        loaded = defs()
    assert loaded.resolve_schedule_def("websync_nightly").cron_schedule == "0 3 * * *"
    assert [r.getMessage() for r in caplog.records if name in r.getMessage()], caplog.text
