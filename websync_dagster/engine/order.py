"""Foreign-key order of the synced tables, from the catalog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

from websync_dagster.core.errors import ConfigError
from websync_dagster.engine.catalog import TableInfo


def dependencies(catalog: Mapping[str, TableInfo]) -> dict[str, set[str]]:
    """For each synced table, the other synced tables it references (self-references left out)."""
    return {
        name: {fk.ref_table for fk in info.foreign_keys if fk.ref_table in catalog and fk.ref_table != name}
        for name, info in catalog.items()
    }


def fk_order(catalog: Mapping[str, TableInfo]) -> list[str]:
    """Tables sorted so that every table comes after those it references: each round of tables whose
    references are all placed keeps catalog order (a stable order, so runs and logs read the same)."""
    position = {name: i for i, name in enumerate(catalog)}
    sorter = TopologicalSorter(dependencies(catalog))
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = sorted(set(exc.args[1]))
        raise ConfigError(f"foreign keys form a cycle among tables {', '.join(cycle)}") from None
    ordered: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        ordered.extend(ready)
        sorter.done(*ready)
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
