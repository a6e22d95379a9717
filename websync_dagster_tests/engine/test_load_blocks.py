"""The staged path's PL/pgSQL programs (engine/load/sql/*.sql): they catch exactly the errors a row can cause
(``ROW_REFUSALS``), read only the settings ``BlockSettings`` sets, and ship with the package. No server."""

from __future__ import annotations

import re
from dataclasses import fields
from importlib import resources

import pytest
from psycopg import sql

from websync_dagster.engine.load import ROW_REFUSALS
from websync_dagster.engine.load.blocks import BLOCKS, BlockSettings, block, block_text

_COMMENT = re.compile(r"--[^\n]*")
_HANDLER = re.compile(r"\bEXCEPTION\s+WHEN\s+(.+?)\s+THEN\b", re.DOTALL | re.IGNORECASE)
_SETTING = re.compile(r"current_setting\('websync\.(\w+)'\)")


def code(name: str) -> str:
    """The block's text without its comments."""
    return _COMMENT.sub("", block_text(name))


@pytest.mark.parametrize("name", BLOCKS)
def test_every_handler_of_a_block_catches_exactly_the_row_refusals(name):
    handlers = _HANDLER.findall(code(name))
    assert handlers, f"{name}.sql has no EXCEPTION handler"
    for conditions in handlers:
        assert re.split(r"\s+OR\s+", conditions.strip(), flags=re.IGNORECASE) == list(ROW_REFUSALS.values())


def test_the_blocks_read_only_the_settings_that_are_set_and_each_one_is_read():
    read = {setting for name in BLOCKS for setting in _SETTING.findall(code(name))}
    assert read == {f.name for f in fields(BlockSettings)}


def test_the_settings_travel_as_quoted_literals_in_one_statement():
    settings = BlockSettings(key="id", table="o'brien", probe_all=sql.SQL("SELECT 'a'"),
                             probe_one=sql.SQL("SELECT $1"), insert_range=sql.SQL("SELECT 1"))
    text = settings.statement().query.as_string(None)
    assert text.startswith("SELECT set_config('websync.key', 'id', true), ")
    assert "set_config('websync.table', 'o''brien', true)" in text
    assert "set_config('websync.probe_all', 'SELECT ''a''', true)" in text
    assert text.count("set_config(") == len(fields(BlockSettings))


def test_the_blocks_are_the_shipped_files_as_they_are():
    shipped = resources.files("websync_dagster.engine.load") / "sql"
    assert sorted(p.name for p in shipped.iterdir() if p.name.endswith(".sql")) == sorted(f"{n}.sql" for n in BLOCKS)
    for name in BLOCKS:
        text = (shipped / f"{name}.sql").read_text(encoding="utf-8")
        assert block(name).query.as_string(None) == text.strip().removesuffix(";")
        assert "{" not in text and "}" not in text, "nothing is pasted into a block"
        assert code(name).lstrip().startswith("DO $websync$")
    with pytest.raises(ValueError, match="no PL/pgSQL block named 'other'"):
        block_text("other")
