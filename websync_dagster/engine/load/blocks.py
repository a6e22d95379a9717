"""The staged path's two PL/pgSQL programs (``sql/probe.sql``, ``sql/insert.sql``, shipped as package data)
and the settings they read.

The programs are static files: nothing is pasted into them. What varies per table and unit travels as
transaction-local settings ``websync.<field>`` of ``BlockSettings``, set in one statement of quoted
literals; the blocks read them with ``current_setting``, quote the key column with ``format('%I', ...)`` and
``EXECUTE`` the statements with their parameters ``USING``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from importlib import resources

from psycopg import sql

from websync_dagster.transport.base import Statement

#: the programs' names: ``sql/<name>.sql``
BLOCKS = ("probe", "insert")


@functools.cache
def block_text(name: str) -> str:
    """The program ``sql/<name>.sql`` as it ships, without its final ``;`` (each transport ends a statement)."""
    if name not in BLOCKS:
        raise ValueError(f"no PL/pgSQL block named {name!r} (blocks: {', '.join(BLOCKS)})")
    text = (resources.files(__package__) / "sql" / f"{name}.sql").read_text(encoding="utf-8")
    return text.strip().removesuffix(";")


def block(name: str) -> Statement:
    """The step that runs the program ``sql/<name>.sql``."""
    return Statement(sql.SQL(block_text(name)))


@dataclass(frozen=True)
class BlockSettings:
    """What the blocks read of the table at hand, each as the setting ``websync.<field name>``."""

    #: the table's primary key column (one column: see engine/plan.py)
    key: str
    #: the table's name, for prod's messages about the probe table
    table: str
    #: the INSERT ... SELECT of every staged row into the probe, with prod's casts
    probe_all: sql.Composable
    #: the same for the staged row ``$1``
    probe_one: sql.Composable
    #: the INSERT into the table of the probe's rows of pass ``$1`` from ``_ws_row`` ``$2`` to ``$3``
    insert_range: sql.Composable

    def statement(self) -> Statement:
        """``SELECT set_config('websync.<name>', <value>, true), ...``: for the rest of the transaction."""
        settings = []
        for f in fields(self):
            value = getattr(self, f.name)
            text = value if isinstance(value, str) else value.as_string(None)
            settings.append(sql.SQL("set_config({}, {}, true)").format(sql.Literal(f"websync.{f.name}"),
                                                                       sql.Literal(text)))
        return Statement(sql.SQL("SELECT {}").format(sql.SQL(", ").join(settings)))
