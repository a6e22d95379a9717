"""The engine's rules, run in seconds through its real entry point (``run_tables``, as the Dagster assets and
the CLI call it) against an in-memory prod behind the transport seam and an in-memory dev behind the dev
side: commit units under the table's advisory lock, the retry after a lost link that resumes after the last
committed unit, the accounting of every shipped row, and the isolation of one table's problem.

What needs a real server (types, constraints, the staged path's SQL, dev's delta SQL, the transports
themselves, lock waits) stays in the real-server suite; see memory_prod.py for what the model leaves out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.errors
import pytest

from websync_dagster.core.errors import TableSyncError
from websync_dagster.core.settings import Settings, load_settings
from websync_dagster.core.tables import DECLARED_DEPS, DEFAULT_TABLES
from websync_dagster.engine import table_run
from websync_dagster.engine.catalog import Column
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run import run_tables
from websync_dagster.engine.table_run import RECONNECT_ATTEMPTS, TableRun
from websync_dagster_tests.fast.memory_dev import MemoryDev
from websync_dagster_tests.fast.memory_prod import (
    MemoryDatabase,
    MemoryTable,
    MemoryTransport,
    Refusal,
    lost_link,
    sample_row,
    sample_table,
)

#: rows of each table in dev, and how many of them (the first) prod already has
DEV_ROWS, IN_PROD = 10, 3
#: a lineage where knowledge_base has no dependent: one table's failure can be seen not to stop the others
SPLIT_DEPS: dict[str, tuple[str, ...]] = {
    "web_sources": (), "knowledge_base": (), "web_pages": ("web_sources",), "web_files": ("web_pages",),
}
KB_EXTRA = (Column("is_indexed", "boolean", False, True, False, "boolean"),
            Column("chunk_count", "integer", False, True, False, "integer"))


def _tables(deps: Mapping[str, Sequence[str]], rows: int, skip: Sequence[str] = ()) -> list[MemoryTable]:
    tables = []
    for name in DEFAULT_TABLES:
        if name in skip:
            continue
        table = sample_table(name, deps[name], extra=KB_EXTRA if name == "knowledge_base" else ())
        for n in range(1, rows + 1):
            row = sample_row(name, n, deps[name])
            if name == "knowledge_base":
                row |= {"is_indexed": "t", "chunk_count": "5"}
            table.rows[row["id"] or ""] = row
        tables.append(table)
    return tables


@dataclass
class World:
    """Dev and prod in memory, and the settings of a run that cuts each table into one-row commit units."""

    prod: MemoryDatabase
    dev: MemoryDev
    settings: Settings
    deps: Mapping[str, Sequence[str]]

    def sync(self) -> dict[str, TableRun]:
        """Every table exported and loaded, as websync_job does."""
        tables = self.settings.tables
        with SyncContext(self.settings, transport=MemoryTransport(self.prod), dev=self.dev) as ctx:
            return {r.table: r for r in run_tables(ctx, export=tables, load=tables, declared_deps=self.deps,
                                                   run_id="fast")}

    def landed_whole(self, table: str) -> bool:
        return self.prod.ids(table) == set(self.dev.tables[table].rows)


def make_world(tmp_path: Path, deps: Mapping[str, Sequence[str]] = DECLARED_DEPS, *,
               prod_lacks: Sequence[str] = ()) -> World:
    dev = _tables(deps, DEV_ROWS)
    prod_tables = _tables(deps, IN_PROD, skip=prod_lacks)
    prod = MemoryDatabase(prod_tables)
    settings = load_settings({"WEBSYNC_DEV_URL": "postgresql://dev@memory.invalid/dev",
                              "WEBSYNC_PROD_URL": "postgresql://prod@memory.invalid/prod",
                              "WEBSYNC_EXPORT_DIR": str(tmp_path / "exports")}, env_file=None)
    # a unit closes at the first row boundary after this long: one row per unit, many units per table
    settings = settings.model_copy(update={"commit_every_s": 1e-9})
    return World(prod, MemoryDev(dev, prod), settings, deps)


@pytest.fixture(autouse=True)
def _no_reconnect_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retries' pauses (1, 2, 4 s) are not the subject here."""
    monkeypatch.setattr(table_run, "RECONNECT_PAUSE_S", 0.0)


def _accounted(run_: TableRun, *, others: int = 0) -> None:
    """Every dev row is inserted, already present, skipped or rejected; prod's count moved by the inserts (and
    by ``others`` rows that another session committed meanwhile)."""
    assert run_.load is not None and run_.export is not None
    result, export = run_.load.result, run_.export
    assert result.lost == 0
    assert result.inserted + result.already_present + result.skipped_total + result.rejected == export.dev_rows
    assert result.after - result.before == result.inserted + others


def test_every_table_lands_in_one_row_units_each_under_its_advisory_lock(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    runs = world.sync()
    for table in DEFAULT_TABLES:
        run_ = runs[table]
        assert run_.error is None and run_.landed, run_.error
        result = run_.load.result if run_.load else None
        assert result is not None
        assert (result.before, result.inserted, result.already_present, result.after) == (3, 7, 3, 10)
        assert result.commits == DEV_ROWS - IN_PROD and result.mode == "direct copy"
        _accounted(run_)
        assert world.landed_whole(table)
        units = world.prod.of(table)
        assert all(t.locked and t.committed and t.path == "fast" for t in units)
        assert [i for t in units for i in t.inserted] == [str(n) for n in range(IN_PROD + 1, DEV_ROWS + 1)]
    assert {r["is_indexed"] for r in world.prod.tables["knowledge_base"].rows.values()
            if int(r["id"] or 0) > IN_PROD} == {"f"}, "the override makes prod re-index the new documents"
    assert world.prod.sessions_opened == 1


@pytest.mark.parametrize("cut", [
    lost_link,
    lambda: psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    lambda: EOFError("the SSH channel closed"),
], ids=["socket", "backend-terminated", "ssh-channel"])
def test_a_cut_link_mid_table_is_retried_and_resumes_after_the_last_committed_unit(
    tmp_path: Path, cut: Callable[[], BaseException]
) -> None:
    world = make_world(tmp_path)
    world.prod.cut_link("web_pages", {4})  # units 1-3 (rows 4-6) committed, the 4th (row 7) in flight
    runs = world.sync()
    pages = runs["web_pages"]
    assert pages.error is None and pages.landed, pages.error
    assert world.landed_whole("web_pages")
    transactions = world.prod.of("web_pages")
    assert [t.committed for t in transactions] == [True, True, True, False, True, True, True, True]
    assert transactions[3].sent == [] and world.prod.sessions_opened == 2
    # the retry's first unit is the row after the last committed one, in a new session; no row is sent twice
    assert transactions[4].sent == ["7"] and transactions[4].session == 2
    inserted = [i for t in transactions if t.committed for i in t.inserted]
    assert sorted(inserted, key=int) == inserted == [str(n) for n in range(4, 11)]
    result = pages.load.result if pages.load else None
    assert result is not None
    assert (result.before, result.inserted, result.already_present, result.shipped, result.after) == (3, 7, 3, 7, 10)
    _accounted(pages)
    exports = [e for e in world.dev.exports if e.table == "web_pages"]
    assert [(e.rows, e.already_in_prod) for e in exports] == [(7, 3), (4, 6)], "the retry ships only the rest"
    assert all(runs[t].landed for t in DEFAULT_TABLES)


def test_a_row_refused_before_a_cut_is_counted_once_after_the_retry(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.prod.refuse("web_pages", "5", Refusal("23514", 'new row for relation "web_pages" violates check constraint'))
    # row 4 (fast), row 5 (fast refused, then staged: rejected), row 6 (fast), row 7 cut
    world.prod.cut_link("web_pages", {5})
    runs = world.sync()
    pages = runs["web_pages"]
    assert pages.landed, pages.error
    result = pages.load.result if pages.load else None
    assert result is not None
    # the retry's export holds row 5 again (prod lacks it): it is refused again, and counted once
    assert (result.inserted, result.already_present, result.rejected, result.after) == (6, 3, 1, 9)
    _accounted(pages)
    assert result.reject_file is not None
    assert [json.loads(line)["id"] for line in Path(result.reject_file).read_text().splitlines()] == ["5"]


def test_a_link_that_stays_down_fails_the_table_after_the_retries_and_only_its_dependents(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.prod.cut_link("web_pages", range(3, 100))
    runs = world.sync()
    pages = runs["web_pages"]
    assert isinstance(pages.error, TableSyncError) and "load into prod failed" in str(pages.error)
    assert "2 rows committed before stay" in str(pages.error) and pages.committed == 2
    attempts = [t for t in world.prod.of("web_pages") if not t.committed]
    assert len(attempts) == RECONNECT_ATTEMPTS + 1
    assert world.prod.ids("web_pages") == {str(n) for n in range(1, 6)}, "the two committed units stay"
    files = runs["web_files"]
    assert files.error is not None and "not loaded: web_pages did not land in prod" in str(files.error)
    assert world.prod.of("web_files") == [] and world.prod.ids("web_files") == {"1", "2", "3"}
    assert runs["web_sources"].landed and runs["knowledge_base"].landed


def test_prod_still_restarting_at_the_reconnect_is_retried_again(tmp_path: Path) -> None:
    world = make_world(tmp_path)

    def restart() -> BaseException:
        world.prod.refused_sessions = 1  # the first reconnect finds prod not accepting connections yet
        return psycopg.errors.AdminShutdown("terminating connection due to administrator command")

    world.prod.cut_link("web_pages", {2}, restart)
    runs = world.sync()
    assert runs["web_pages"].landed and world.landed_whole("web_pages")
    assert world.prod.refused_sessions == 0 and world.prod.sessions_opened == 2
    _accounted(runs["web_pages"])


def test_a_failed_unit_keeps_the_units_before_it_and_says_so(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.prod.fail("web_pages", {4}, lambda: psycopg.errors.DiskFull("could not extend file: No space left"))
    runs = world.sync()
    error = runs["web_pages"].error
    assert error is not None
    assert "could not extend file: No space left (SQLSTATE 53100)" in str(error)
    assert "rows from 4 of the delta" in str(error) and "3 rows committed before stay" in str(error)
    assert runs["web_pages"].committed == 3
    assert world.prod.ids("web_pages") == {str(n) for n in range(1, 7)}
    assert len(world.prod.of("web_pages")) == 4, "not a lost link: not retried"
    assert world.prod.sessions_opened == 1


@pytest.mark.parametrize(("sqlstate", "message", "detail", "reason"), [
    ("23514", 'new row for relation "web_pages" violates check constraint "url_https"',
     "Failing row contains (6, ...).", 'new row for relation "web_pages" violates check constraint "url_https"'),
    ("22P02", "invalid input syntax for type bigint: \"x\"", "", "invalid input syntax for type bigint: \"x\""),
    ("54000", "index row size 3000 exceeds btree version 4 maximum 2704", "Values larger than 1/3 of a page.",
     "index row size 3000 exceeds btree version 4 maximum 2704 (Values larger than 1/3 of a page.)"),
    ("P0001", "pages from this source are frozen", "", "pages from this source are frozen"),
    ("44000", "new row violates check option for view", "", "new row violates check option for view"),
], ids=["check", "type", "program-limit", "trigger", "check-option"])
def test_a_row_prod_refuses_is_rejected_with_its_reason_and_the_rest_lands(
    tmp_path: Path, sqlstate: str, message: str, detail: str, reason: str
) -> None:
    world = make_world(tmp_path)
    world.prod.refuse("web_pages", "6", Refusal(sqlstate, message, detail))
    runs = world.sync()
    pages = runs["web_pages"]
    assert pages.error is None and pages.landed, pages.error
    result = pages.load.result if pages.load else None
    assert result is not None
    assert (result.inserted, result.already_present, result.rejected, result.after) == (6, 3, 1, 9)
    assert result.mode == "staged" and result.fallback_reason == message
    _accounted(pages)
    assert world.prod.ids("web_pages") == {str(n) for n in range(1, 11)} - {"6"}
    assert [t.path for t in world.prod.of("web_pages") if t.sent == ["6"]] == ["fast", "staged"]
    assert result.reject_file is not None
    (line,) = Path(result.reject_file).read_text(encoding="utf-8").splitlines()
    reject = json.loads(line)
    assert (reject["table"], reject["id"], reject["reason"]) == ("web_pages", "6", reason)
    assert reject["row"]["url"] == "https://example.test/web_pages/6"
    assert runs["web_files"].landed, "a rejected row is not a failed table"


def test_a_row_that_arrived_in_prod_after_the_export_is_counted_present_and_left_untouched(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    app_row = {"id": "8", "url": "https://example.test/the-app-wrote-it", "web_sources_id": "1",
               "knowledge_base_id": "1"}
    world.prod.arrive("web_pages", 5, app_row)  # the app inserts page 8 while the sync sends page 8
    runs = world.sync()
    result = runs["web_pages"].load.result if runs["web_pages"].load else None
    assert result is not None and runs["web_pages"].landed
    assert (result.inserted, result.already_present, result.skipped, result.after) == (6, 4, {}, 10)
    assert world.prod.tables["web_pages"].rows["8"] == app_row
    assert [t.path for t in world.prod.of("web_pages") if t.sent == ["8"]] == ["fast", "staged"]
    _accounted(runs["web_pages"], others=1)


@pytest.mark.parametrize(("failing", "stopped"), [
    ("web_sources", {"web_pages", "web_files"}),
    ("knowledge_base", set()),
    ("web_pages", {"web_files"}),
])
def test_one_tables_failure_stops_only_the_tables_that_depend_on_it(
    tmp_path: Path, failing: str, stopped: set[str]
) -> None:
    world = make_world(tmp_path, SPLIT_DEPS)
    world.prod.fail(failing, range(1, 100), lambda: psycopg.errors.InternalError_("could not read block 7"))
    runs = world.sync()
    assert runs[failing].error is not None and "could not read block 7 (SQLSTATE XX000)" in str(runs[failing].error)
    for table in stopped:
        assert f"not loaded: {failing}" in str(runs[table].error) or "did not land" in str(runs[table].error)
        assert world.prod.of(table) == [] and world.prod.ids(table) == {"1", "2", "3"}
    for table in set(DEFAULT_TABLES) - stopped - {failing}:
        assert runs[table].error is None and runs[table].landed and world.landed_whole(table), table


def test_a_table_prod_does_not_have_is_that_tables_error_only(tmp_path: Path) -> None:
    world = make_world(tmp_path, prod_lacks=["web_files"])
    runs = world.sync()
    assert "table not found in the prod database" in str(runs["web_files"].error)
    assert all(runs[t].landed for t in ("web_sources", "knowledge_base", "web_pages"))


def test_a_lock_prod_will_not_give_stops_only_that_table_and_its_dependents(tmp_path: Path) -> None:
    world = make_world(tmp_path, SPLIT_DEPS)
    world.prod.locks["web_pages"] = 0  # another session holds the table's advisory lock past lock_timeout
    runs = world.sync()
    error = str(runs["web_pages"].error)
    assert "for a lock on prod held by" in error and "0 rows committed before stay" in error
    assert world.prod.ids("web_pages") == {"1", "2", "3"}
    assert "not loaded: web_pages did not land in prod" in str(runs["web_files"].error)
    assert runs["web_sources"].landed and runs["knowledge_base"].landed


@pytest.mark.parametrize("where", ["prod result", "dev export"])
def test_a_bug_met_by_one_table_is_that_tables_error_only(tmp_path: Path, where: str) -> None:
    world = make_world(tmp_path, SPLIT_DEPS)
    if where == "prod result":  # a step's result without the column the engine reads: KeyError('n')
        world.prod.misname("knowledge_base", "after", "count")
    else:
        world.dev.fail["knowledge_base"] = lambda: KeyError("n")
    runs = world.sync()
    error = runs["knowledge_base"].error
    assert error is not None
    assert str(error) == "knowledge_base: internal error: KeyError: 'n' (a bug in websync; --debug shows the traceback)"
    chain, current = [], error.__cause__
    while current is not None:
        chain.append(type(current))
        current = current.__cause__
    assert KeyError in chain, "--debug shows the bug's own traceback"
    for table in ("web_sources", "web_pages", "web_files"):
        assert runs[table].landed and world.landed_whole(table), table
