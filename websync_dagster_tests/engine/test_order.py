"""The foreign-key order of the synced tables (no server: the catalog is built by hand)."""

from __future__ import annotations

import pytest

from websync_dagster.core.errors import ConfigError
from websync_dagster.engine.catalog import ForeignKey, TableInfo
from websync_dagster.engine.order import fk_order


def table(name: str, *refs: str) -> TableInfo:
    keys = tuple(ForeignKey(f"{name}_{ref}_fkey", (f"{ref}_id",), ref, ("id",)) for ref in refs)
    return TableInfo(name, (), (), keys)


def catalog(*tables: TableInfo) -> dict[str, TableInfo]:
    return {t.name: t for t in tables}


def test_every_table_comes_after_those_it_references_and_ties_keep_catalog_order() -> None:
    tables = catalog(table("web_files", "web_pages"), table("web_pages", "web_sources"), table("knowledge_base"),
                     table("web_sources"), table("notes", "web_pages", "web_pages"), table("tree", "tree"))
    assert fk_order(tables) == ["knowledge_base", "web_sources", "tree", "web_pages", "web_files", "notes"]


def test_a_table_referencing_an_unsynced_table_is_not_held_back() -> None:
    assert fk_order(catalog(table("web_pages", "users"), table("a"))) == ["web_pages", "a"]


def test_a_cycle_is_one_line_naming_its_tables() -> None:
    tables = catalog(table("a"), table("b", "c"), table("c", "b"), table("d", "b"))
    with pytest.raises(ConfigError, match=r"^foreign keys form a cycle among tables b, c$"):
        fk_order(tables)
