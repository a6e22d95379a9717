"""An in-memory prod behind the transport seam: ``MemoryTransport`` opens ``MemorySession``s over one
``MemoryDatabase`` (tables of rows by id, their unique keys, the tables' advisory locks), which answers the
engine's named steps as the real SQL does, and can be told to fail.

What it recognises, and from what (the engine's SQL is not parsed, only told apart):
- the catalog query (engine/catalog.py): the JSON rows of columns, unique and foreign keys of each table;
- ``SELECT count(*) AS n FROM <table>`` (load/steps.py ``count_rows``), counted in the transaction;
- the table's advisory lock (``pg_advisory_xact_lock``), held to the transaction's end;
- the fast path: ``COPY <table>`` of a unit, refused whole by the first row that clashes on a unique key
  (23505) or that a fault refuses, as prod's COPY is;
- the staged path: ``COPY`` into ``_ws_stage``, then the insert block (sql/insert.sql), whose outcome the
  queries of ``_ws_inserted``, ``_ws_skipped``, ``_ws_nulled`` and ``_ws_rejects`` read back in the shape the
  real ones return (a reject: ``id``, ``reason`` as the blocks build it, ``row``: the staged row as text), and
  the rows a unit inserted (load/steps.py ``landed_rows``: their ids, an xmin of the transaction). The
  other statements of the path (temp tables, settings, the probe block, the clash passes) touch only temp
  tables: accepted, their effect is the insert block's here.

Not modelled (left to the real-server suite): types and casts, CHECK constraints other than a refusal told
by a fault, foreign keys (no reference is checked or nulled), expression and partial unique indexes, NULL
versus empty text in the CSV (the model's values are never empty), lock waits and ``lock_timeout``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from websync_dagster.core.errors import SyncError
from websync_dagster.engine.catalog import Column, ForeignKey, TableInfo, UniqueKey
from websync_dagster.engine.load.blocks import block_text
from websync_dagster.engine.load.clashes import ALREADY_PRESENT
from websync_dagster.engine.load.refusals import ROW_REFUSALS
from websync_dagster.transport.base import (
    BeforeCommit,
    CopyIn,
    ProdSession,
    ProdTransport,
    Query,
    Results,
    Statement,
    Step,
    check_step_names,
)

Row = dict[str, str | None]

_COUNT = re.compile(r'^SELECT count\(\*\) AS n FROM "(\w+)"$')
_LOCK = re.compile(r"pg_advisory_xact_lock\(hashtextextended\('websync:(\w+)', 0\)\)")
_CATALOG = re.compile(r"^\s*SELECT c\.relname AS name,.*c\.relname = ANY\('\{([\w,]*)\}'\)\s*$", re.S)
_STAGE = "_ws_stage"


def text(query: sql.Composable) -> str:
    """The SQL as prod would receive it."""
    return query.as_string(None)


def catalog_tables(said: str) -> list[str] | None:
    """The tables engine/catalog.py's query asks about, or None if ``said`` is not that query."""
    match = _CATALOG.match(said)
    return match.group(1).split(",") if match else None


def catalog_rows(tables: Mapping[str, MemoryTable], asked: Sequence[str]) -> list[dict[str, Any]]:
    """The catalog query's rows: those of the tables asked about that exist."""
    return [tables[name].catalog_row() for name in asked if name in tables]


def csv_rows(data: bytes, columns: Sequence[str]) -> list[Row]:
    """The rows of a Postgres CSV with header (an empty unquoted field is NULL: the model has no empty text)."""
    header, *lines = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    if tuple(header) != tuple(columns):
        raise psycopg.errors.BadCopyFileFormat(f"header {header} is not the COPY's columns {list(columns)}")
    return [{c: (v if v != "" else None) for c, v in zip(columns, line, strict=True)} for line in lines]


@dataclass
class MemoryTable:
    """A table's catalog and its rows by id (each value as Postgres's text output)."""

    info: TableInfo
    rows: dict[str, Row] = field(default_factory=dict)

    @property
    def key(self) -> str:
        (key,) = self.info.primary_key
        return key

    def catalog_row(self) -> dict[str, Any]:
        """What engine/catalog.py's query returns for the table."""
        return {
            "name": self.info.name,
            "columns": [c.__dict__ for c in self.info.columns],
            "unique_keys": [{"name": k.name, "primary": k.primary, "columns": list(k.columns)}
                            for k in self.info.unique_keys],
            "foreign_keys": [{"name": f.name, "ref_table": f.ref_table, "columns": list(f.columns),
                              "ref_columns": list(f.ref_columns)} for f in self.info.foreign_keys],
            "expression_keys": [],
        }

    def clash(self, row: Row, rows: Mapping[str, Row]) -> UniqueKey | None:
        """The first unique key (primary first) on which ``row`` clashes with ``rows``; NULLs never clash."""
        for key in sorted(self.info.unique_keys, key=lambda k: not k.primary):
            value = tuple(row.get(c) for c in key.columns)
            if None in value:
                continue
            if key.primary and value[0] in rows:
                return key
            if not key.primary and any(tuple(r.get(c) for c in key.columns) == value for r in rows.values()):
                return key
        return None


def sample_table(name: str, references: Sequence[str] = (), *, extra: Sequence[Column] = ()) -> MemoryTable:
    """A synced table as the model holds it: ``id`` (primary key), ``url`` (another unique key), one
    ``<table>_id`` column per referenced table (a foreign key), then ``extra``."""
    columns = [
        Column("id", "bigint", True, False, False, "bigint"),
        Column("url", "text", True, False, False, "text"),
        *(Column(f"{ref}_id", "bigint", False, False, False, "bigint") for ref in references),
        *extra,
    ]
    keys = (UniqueKey(f"{name}_pkey", ("id",), True), UniqueKey(f"{name}_url_key", ("url",), False))
    fks = tuple(ForeignKey(f"{name}_{ref}_id_fkey", (f"{ref}_id",), ref, ("id",)) for ref in references)
    return MemoryTable(TableInfo(name, tuple(columns), keys, fks))


def sample_row(table: str, n: int, references: Sequence[str] = ()) -> Row:
    """Row ``n`` of a ``sample_table``: its url names the table and ``n``; each reference is to row 1."""
    return {"id": str(n), "url": f"https://example.test/{table}/{n}", **{f"{ref}_id": "1" for ref in references}}


@dataclass(frozen=True)
class Refusal:
    """Prod refuses a row, with a row-class SQLSTATE (a CHECK, a trigger's RAISE, a type...)."""

    sqlstate: str
    message: str
    detail: str = ""

    def error(self) -> psycopg.Error:
        """What prod's COPY raises for that row (the fast path)."""
        return psycopg.errors.lookup(self.sqlstate)(self.message)

    def reason(self) -> str:
        """The reason the blocks in load/sql/ record: the message, then the detail in parentheses except for
        a CHECK's or NOT NULL's (whose detail is the whole row)."""
        shown = self.detail and self.sqlstate not in ("23514", "23502")
        return f"{self.message} ({self.detail})" if shown else self.message


@dataclass
class Transaction:
    """One transaction a session ran, for the tests to examine."""

    session: int
    table: str | None = None
    #: "fast" (COPY into the table) or "staged"
    path: str | None = None
    locked: bool = False
    #: ids the unit sent, in file order
    sent: list[str] = field(default_factory=list)
    #: ids it inserted (kept only if it committed)
    inserted: list[str] = field(default_factory=list)
    committed: bool = False
    error: BaseException | None = None


def lost_link() -> BaseException:
    """What psycopg raises when the server or the link went away mid-statement (no SQLSTATE)."""
    return psycopg.OperationalError("server closed the connection unexpectedly")


@dataclass
class _Fault:
    table: str
    transactions: Collection[int]
    error: Callable[[], BaseException]


class MemoryDatabase:
    """Prod's tables in memory, the faults to inject, and the record of every transaction."""

    def __init__(self, tables: Iterable[MemoryTable]) -> None:
        self.tables = {t.info.name: t for t in tables}
        self.transactions: list[Transaction] = []
        self.sessions_opened = 0
        #: table -> the session holding its advisory lock
        self.locks: dict[str, int] = {}
        #: table -> id -> how prod refuses that row
        self.refusals: dict[str, dict[str, Refusal]] = {}
        self.cuts: list[_Fault] = []
        self.failures: list[_Fault] = []
        #: (table, step name) -> the column name its rows come back under instead of the right one
        self.misnamed: dict[tuple[str, str], str] = {}
        #: sessions that cannot be opened yet (prod restarting): each attempt uses one up
        self.refused_sessions = 0
        #: (table, transaction) -> rows another session commits just before that transaction begins
        self.arrivals: dict[tuple[str, int], list[Row]] = {}

    # faults
    def cut_link(self, table: str, transactions: Collection[int], error: Callable[[], BaseException] = lost_link
                 ) -> None:
        """The link breaks while the table's ``transactions`` (numbered from 1 over the run, every session
        and path counted) send their unit: ``error`` is raised and the session stays broken."""
        self.cuts.append(_Fault(table, transactions, error))

    def refuse(self, table: str, row_id: str, refusal: Refusal) -> None:
        self.refusals.setdefault(table, {})[row_id] = refusal

    def fail(self, table: str, transactions: Collection[int], error: Callable[[], BaseException]) -> None:
        """The table's ``transactions`` fail with ``error`` (not a row's: a full disk, an internal error...)."""
        self.failures.append(_Fault(table, transactions, error))

    def arrive(self, table: str, transaction: int, row: Row) -> None:
        """Another session (the app) commits ``row`` just before the table's ``transaction`` begins."""
        self.arrivals.setdefault((table, transaction), []).append(row)

    def misname(self, table: str, step: str, column: str) -> None:
        """The table's step ``step`` returns its value under ``column``: a result the engine does not expect."""
        self.misnamed[(table, step)] = column

    # what the tests read
    def ids(self, table: str) -> set[str]:
        return set(self.tables[table].rows)

    def of(self, table: str) -> list[Transaction]:
        return [t for t in self.transactions if t.table == table]

    def fault(self, faults: list[_Fault], table: str, number: int) -> BaseException | None:
        for f in faults:
            if f.table == table and number in f.transactions:
                return f.error()
        return None


class MemoryTransport(ProdTransport):
    name = "memory"

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def describe(self) -> str:
        return "prod in memory"

    @contextlib.contextmanager
    def session(self) -> Iterator[MemorySession]:
        if self.db.refused_sessions:
            self.db.refused_sessions -= 1
            try:
                raise ConnectionRefusedError("connection refused")
            except ConnectionRefusedError:  # as transport/direct.py says it
                raise SyncError("cannot connect to prod database at memory: connection refused") from None
        self.db.sessions_opened += 1
        session = MemorySession(self.db, self.db.sessions_opened)
        try:
            yield session
        finally:
            session.closed = True


class MemorySession(ProdSession):
    name = "memory"

    def __init__(self, db: MemoryDatabase, number: int) -> None:
        self.db = db
        self.number = number
        self.application_name = f"websync-memory-{number}"
        self.closed = False
        self.broken: BaseException | None = None

    def _check_usable(self) -> None:
        if self.closed:
            raise psycopg.OperationalError("the connection is closed")
        if self.broken is not None:
            raise lost_link() from self.broken

    def query(self, query: sql.Composable) -> list[dict[str, Any]]:
        self._check_usable()
        said = text(query)
        if (asked := catalog_tables(said)) is not None:
            return catalog_rows(self.db.tables, asked)
        if match := _COUNT.match(said):
            return [{"n": len(self.db.tables[match.group(1)].rows)}]
        raise NotImplementedError(f"the memory prod does not answer this query: {said[:200]}")

    def copy_out(self, query: sql.Composable) -> Iterator[bytes]:
        raise NotImplementedError(f"the memory prod does not answer COPY TO: {text(query)[:200]}")

    def run_transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> Results:
        self._check_usable()
        check_step_names(steps)
        tx = _Work(self, Transaction(self.number))
        self.db.transactions.append(tx.record)
        try:
            for step in steps:
                tx.run(step)
            if before_commit is not None:
                before_commit(tx.results)
        except BaseException as exc:
            tx.record.error = exc
            raise
        finally:
            self.db.locks = {t: s for t, s in self.db.locks.items() if s != self.number}
        tx.commit()
        return tx.results


class _Work:
    """One transaction's work on copies of the tables it writes (dropped unless it commits)."""

    def __init__(self, session: MemorySession, record: Transaction) -> None:
        self.session = session
        self.db = session.db
        self.record = record
        self.results = Results()
        self.rows: dict[str, dict[str, Row]] = {}
        self.stage: list[Row] = []
        self.staged: dict[str, Any] = {}

    def table_rows(self, table: str) -> dict[str, Row]:
        if table not in self.rows:
            self.rows[table] = dict(self.db.tables[table].rows)
        return self.rows[table]

    def commit(self) -> None:
        for table, rows in self.rows.items():
            self.db.tables[table].rows = rows
        self.record.committed = True

    def run(self, step: Step) -> None:
        if isinstance(step, Statement):
            self.statement(text(step.query))
        elif isinstance(step, Query):
            self.results[step.name] = self.query(step.name, text(step.query))
        else:
            self.results[step.name] = [{"rows": self.copy_in(step)}]

    def _begin(self, table: str) -> None:
        """The table's first step in the transaction: numbered, and failed if a fault says so."""
        self.record.table = table
        number = len(self.db.of(table))
        model = self.db.tables[table]
        for row in self.db.arrivals.pop((table, number), []):
            model.rows[row[model.key] or ""] = row
        if (error := self.db.fault(self.db.failures, table, number)) is not None:
            raise error

    def statement(self, said: str) -> None:
        if match := _LOCK.search(said):
            table = match.group(1)
            self.record.table = table
            holder = self.db.locks.get(table)
            if holder is not None and holder != self.session.number:
                raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
            self.db.locks[table] = self.session.number
            self.record.locked = True
            self._begin(table)
        elif said.strip() == block_text("insert").strip():
            self.insert_block()
        elif "_ws_" in said or said.startswith("SELECT set_config("):
            return  # the staged path's temp tables, settings, probe and clash passes: see the module's doc
        else:
            raise NotImplementedError(f"the memory prod does not run this statement: {said[:200]}")

    def query(self, name: str, said: str) -> list[dict[str, Any]]:
        table = self.record.table or ""
        if match := _COUNT.match(said):
            rows = [{"n": len(self.table_rows(match.group(1)))}]
        elif '"_ws_inserted"' in said:
            rows = [{"n": self.staged["inserted"]}]
        elif '"_ws_skipped"' in said:
            rows = [{"key_name": k, "n": n} for k, n in self.staged["skipped"].items()]
        elif '"_ws_nulled"' in said:
            rows = []
        elif '"_ws_rejects"' in said:
            rows = self.staged["rejects"]
        elif "pg_current_xact_id()" in said or '"_ws_landed"' in said:  # load/steps.py landed_rows
            rows = [{"id": row_id, "xmin": str(id(self.record))} for row_id in self.record.inserted]
        else:
            raise NotImplementedError(f"the memory prod does not answer this query: {said[:200]}")
        if (table, name) in self.db.misnamed:
            wrong = self.db.misnamed[(table, name)]
            rows = [{wrong: next(iter(r.values()))} for r in rows]
        return rows

    def copy_in(self, step: CopyIn) -> int:
        into = step.table.as_string(None).split(".")[-1].strip('"')
        table = self.record.table
        if table is None:
            raise AssertionError(f"COPY into {into} before the table's advisory lock")
        chunks = iter(step.source())
        data = next(chunks, b"")
        number = len(self.db.of(table))
        if (cut := self.db.fault(self.db.cuts, table, number)) is not None:
            self.session.broken = cut
            raise cut
        data += b"".join(chunks)
        rows = csv_rows(data, step.columns)
        key = self.db.tables[table].key
        self.record.sent = [r[key] or "" for r in rows]
        if into == _STAGE:
            self.record.path = "staged"
            self.stage = rows
        else:
            self.record.path = "fast"
            self.fast_copy(table, rows)
        return len(rows)

    def fast_copy(self, table: str, rows: list[Row]) -> None:
        model = self.db.tables[table]
        target = self.table_rows(table)
        refusals = self.db.refusals.get(table, {})
        for row in rows:
            row_id = row[model.key] or ""
            if (key := model.clash(row, target)) is not None:
                raise psycopg.errors.UniqueViolation(f'duplicate key value violates unique constraint "{key.name}"')
            if row_id in refusals:
                raise refusals[row_id].error()
            target[row_id] = row
            self.record.inserted.append(row_id)

    def insert_block(self) -> None:
        """The staged unit's outcome, as the clash passes and sql/insert.sql leave it: rows prod has on a
        unique key skipped (by id: already present), rows prod refuses rejected with the blocks' reason, a
        refusal that is not a row's raised (the blocks do not catch it), the others inserted."""
        table = self.record.table or ""
        model = self.db.tables[table]
        target = self.table_rows(table)
        refusals = self.db.refusals.get(table, {})
        skipped: dict[str, int] = {}
        rejects: list[dict[str, Any]] = []
        inserted = 0
        for row in self.stage:
            row_id = row[model.key] or ""
            if (key := model.clash(row, target)) is not None:
                label = ALREADY_PRESENT if key.primary else key.name
                skipped[label] = skipped.get(label, 0) + 1
            elif (refusal := refusals.get(row_id)) is not None:
                if refusal.sqlstate[:2] not in ROW_REFUSALS:
                    raise refusal.error()
                rejects.append({"id": row_id, "reason": refusal.reason(), "row": dict(row)})
            else:
                target[row_id] = row
                self.record.inserted.append(row_id)
                inserted += 1
        self.staged = {"inserted": inserted, "skipped": skipped, "rejects": rejects}
