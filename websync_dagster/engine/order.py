"""Foreign-key order of the synced tables, from the catalog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from websync_dagster.core.errors import ConfigError
from websync_dagster.engine.catalog import TableInfo


def dependencies(catalog: Mapping[str, TableInfo]) -> dict[str, set[str]]:
    """For each synced table, the other synced tables it references (self-references left out)."""
    return {
        name: {fk.ref_table for fk in info.foreign_keys if fk.ref_table in catalog and fk.ref_table != name}
        for name, info in catalog.items()
    }


def fk_order(catalog: Mapping[str, TableInfo]) -> list[str]:
    """Tables sorted so that every table comes after those it references; ties keep catalog order."""
    deps = dependencies(catalog)
    ordered: list[str] = []
    pending = list(catalog)
    while pending:
        ready = [t for t in pending if deps[t] <= set(ordered)]
        if not ready:
            raise ConfigError(f"foreign keys form a cycle among tables {', '.join(sorted(pending))}")
        ordered.extend(ready)
        pending = [t for t in pending if t not in ready]
    return ordered


def check_declared_order(declared: Mapping[str, Sequence[str]], catalog: Mapping[str, TableInfo]) -> None:
    """Fail when a table references a synced table its asset does not depend on.

    ``declared`` maps each table to the tables whose prod load it waits for (the asset graph).
    """
    for table, needs in dependencies(catalog).items():
        missing = sorted(needs - set(declared.get(table, ())))
        if missing:
            raise ConfigError(
                f"{table} references {', '.join(missing)} in prod, but {table}/prod_upserted does not depend "
                f"on {', '.join(m + '/prod_upserted' for m in missing)}: the declared load order is wrong"
            )
