"""The synced tables and their lineage: the one list every layer reads (settings, engine, Dagster assets)."""

from __future__ import annotations

from collections.abc import Sequence

from websync_dagster.core.errors import ConfigError

#: the synced tables, in foreign-key order
DEFAULT_TABLES: tuple[str, ...] = ("web_sources", "knowledge_base", "web_pages", "web_files")
#: rebuilt by prod after a sync (chunks and embeddings), never copied
NEVER_SYNCED = ("knowledge_base_chunks",)
#: which tables each table's rows reference (the lineage of the prod loads); checked against prod's
#: real foreign keys before a load writes anything
DECLARED_DEPS: dict[str, tuple[str, ...]] = {
    "web_sources": (),
    "knowledge_base": (),
    "web_pages": ("web_sources", "knowledge_base"),
    "web_files": ("web_sources", "knowledge_base", "web_pages"),
}
#: prod tables whose new rows prod's indexer picks up after a sync
REINDEXED_TABLES = ("knowledge_base", "web_pages")


def parse_tables(value: str | Sequence[str] | None) -> list[str]:
    """The tables to sync, from a comma list; an unknown or excluded table is refused by name."""
    if value is None or value == "":
        return list(DEFAULT_TABLES)
    names = [t.strip() for t in value.split(",")] if isinstance(value, str) else [t.strip() for t in value]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"no table named in {value!r}: websync syncs {', '.join(DEFAULT_TABLES)}")
    for name in names:
        if name in NEVER_SYNCED:
            raise ConfigError(f"table {name} is never synced: prod rebuilds it after a sync")
        if name not in DEFAULT_TABLES:
            raise ConfigError(f"unknown table {name!r}: websync syncs {', '.join(DEFAULT_TABLES)}")
    return [t for t in DEFAULT_TABLES if t in names]
