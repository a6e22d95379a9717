"""Which columns of a table are shipped, matched by name, and what is reported about the others."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from websync_dagster.core.errors import TableSyncError
from websync_dagster.engine.catalog import TableInfo

#: what a sync writes instead of dev's value, so that prod re-indexes the documents
DEFAULT_OVERRIDES: dict[str, dict[str, Any]] = {"knowledge_base": {"is_indexed": False, "chunk_count": 0}}


@dataclass(frozen=True)
class TypeMismatch:
    column: str
    dev_type: str
    prod_type: str

    def __str__(self) -> str:
        return f"{self.column}: dev {self.dev_type}, prod {self.prod_type}"


@dataclass(frozen=True)
class TablePlan:
    table: str
    key: str
    shipped: tuple[str, ...]
    dev_only: tuple[str, ...]
    prod_only: tuple[str, ...]
    type_mismatches: tuple[TypeMismatch, ...]
    #: prod's catalog of the table, which the load's statements are built from
    prod: TableInfo
    overrides: Mapping[str, Any] = field(default_factory=dict)
    dev: TableInfo | None = None
    #: overrides not applied: column -> why (e.g. prod has no such column)
    overrides_skipped: Mapping[str, str] = field(default_factory=dict)
    #: the version column of a table opted in to newer-wins updates (engine/update/), else None: insert-only
    version: str | None = None

    @property
    def warnings(self) -> list[str]:
        """What the user should know although the table can be synced."""
        return [f"override of {column} skipped: {why}" for column, why in self.overrides_skipped.items()]


#: the types a version column may have: ordered, and compared the same way on both sides
VERSION_TYPES = ("timestamp with time zone", "timestamp without time zone", "date", "smallint", "integer", "bigint",
                 "numeric")


def check_version(table: str, column: str, dev: TableInfo, prod: TableInfo) -> str:
    """The version column of a table opted in to newer-wins updates, refused with one line unless both sides have
    it, with the same type, one that orders versions (``VERSION_TYPES``)."""
    for side, info in (("dev", dev), ("prod", prod)):
        if column not in info.column_names:
            raise TableSyncError(table, f"WEBSYNC_UPDATE_NEWER: the version column {column} is not in {side}'s "
                                 f"{table}: no row of it was updated (name another column, or leave {table} out)")
    dev_type, prod_type = dev.column(column).type, prod.column(column).type
    if dev_type != prod_type:
        raise TableSyncError(table, f"WEBSYNC_UPDATE_NEWER: the version column {column} is {dev_type} in dev and "
                             f"{prod_type} in prod: versions can only be compared with one type")
    if (dev.column(column).base_type or dev_type) not in VERSION_TYPES:
        raise TableSyncError(table, f"WEBSYNC_UPDATE_NEWER: the version column {column} is {dev_type}, which does "
                             f"not order versions (use one of: {', '.join(VERSION_TYPES)})")
    if prod.column(column).generated:
        raise TableSyncError(table, f"WEBSYNC_UPDATE_NEWER: the version column {column} is generated in prod")
    return column


def plan_table(dev: TableInfo, prod: TableInfo, overrides: Mapping[str, Any] | None = None,
               version: str | None = None) -> TablePlan:
    """Match dev's and prod's columns by name; refuse what cannot be inserted. An override of a column
    that is not shipped (e.g. prod has no such column) is skipped and reported, not refused. ``version``: the
    table's version column when it is opted in to newer-wins updates (checked by ``check_version``)."""
    table = dev.name
    key = dev.primary_key
    if len(key) != 1 or prod.primary_key != key:
        raise TableSyncError(
            table, f"needs the same one-column primary key on both sides (dev {key}, prod {prod.primary_key})"
        )
    prod_names = set(prod.column_names)
    dev_names = set(dev.column_names)
    shipped = tuple(c.name for c in dev.columns if c.name in prod_names and not prod.column(c.name).generated)
    dev_only = tuple(c for c in dev.column_names if c not in prod_names)
    prod_only = tuple(c for c in prod.column_names if c not in dev_names)
    for name in prod_only:
        column = prod.column(name)
        if column.not_null and not column.has_default and not column.generated:
            raise TableSyncError(
                table, f"prod column {name} ({column.type}) is NOT NULL without a default and dev has no such "
                f"column: add a default in prod or the column in dev"
            )
    mismatches = tuple(
        TypeMismatch(name, dev.column(name).type, prod.column(name).type)
        for name in shipped
        if dev.column(name).type != prod.column(name).type
    )
    overrides = overrides or {}
    return TablePlan(
        table=table,
        key=key[0],
        shipped=shipped,
        dev_only=dev_only,
        prod_only=prod_only,
        type_mismatches=mismatches,
        overrides={k: v for k, v in overrides.items() if k in shipped},
        dev=dev,
        prod=prod,
        overrides_skipped={k: _why_not_applied(k, prod) for k in overrides if k not in shipped},
        version=check_version(table, version, dev, prod) if version else None,
    )


def _why_not_applied(column: str, prod: TableInfo) -> str:
    """Why an override of ``column`` cannot be applied: the column is not shipped."""
    if column not in prod.column_names:
        return "prod has no such column"
    if prod.column(column).generated:
        return "prod generates that column"
    return "dev has no such column (prod's default applies)"
