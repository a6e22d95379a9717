"""Dagster's SQLite event log, committing without a full fsync per event.

Dagster writes every event of a run (step start, each output, each materialisation, each check, each log
line) in its own SQLite transaction; the stock storage opens a new engine for each and, in WAL mode with
SQLite's default ``synchronous=FULL``, waits for an fsync each time. A sync run writes about 55 events,
so on a small VPS disk that fixed cost was most of a run that has little to ship (measured in
docs/BENCHMARKS.md). This storage keeps the same files, schema and WAL mode, keeps one engine per shard,
and sets ``synchronous=NORMAL``: SQLite documents that WAL + NORMAL never corrupts the database; a power
loss can lose the last events written, not the log. The project's ``dagster.yaml`` selects it; with
``DAGSTER_PG_URL`` set, Postgres storage is used instead and this class is not involved.

The storage is selected by class path in ``dagster.yaml`` and pins ``dagster==1.13.27`` (pyproject):
it overrides ``SqliteEventLogStorage._connect``, which is not a public API.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

#: engines kept per shard (one shard per run, plus the index); the oldest are disposed beyond this
ENGINES_KEPT = 32
BUSY_TIMEOUT_S = 15


def _relaxed_sync(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class WalNormalSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with ``synchronous=NORMAL`` and one engine per shard.

    ``base_dir`` defaults to ``$DAGSTER_HOME/history/runs``, where Dagster's default storage keeps the
    same files, so an instance keeps its history when switching to or from it (``websync`` writes it
    into DAGSTER_HOME's dagster.yaml). Without either, as in Dagster's temporary instance, it is a
    temporary directory.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> WalNormalSqliteEventLogStorage:
        base_dir = config_value.get("base_dir")
        if not base_dir and os.environ.get("DAGSTER_HOME"):
            base_dir = os.path.join(os.environ["DAGSTER_HOME"], "history", "runs")
        if not base_dir:  # Dagster's temporary instance (no DAGSTER_HOME): events are ephemeral there too
            base_dir = tempfile.mkdtemp(prefix="websync-dagster-events-")
        return cls(base_dir, inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = db.create_engine(self.conn_string_for_shard(shard), poolclass=NullPool,
                                      connect_args={"timeout": BUSY_TIMEOUT_S})
            db.event.listen(engine, "connect", _relaxed_sync)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > ENGINES_KEPT:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()
        super().dispose()
