"""Dev versus prod, per table: counts, rows missing in prod, rows only in prod."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from websync_dagster.sync.tables import prod_keys
from websync_dagster.transport.base import ProdSession


@dataclass(frozen=True)
class TableDiff:
    table: str
    dev_rows: int
    prod_rows: int
    missing_in_prod: int
    only_in_prod: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diff_table(dev: psycopg.Connection, session: ProdSession, table: str, key: str = "id") -> TableDiff:
    """Compare the key sets: prod's keys are streamed into a dev temp table and joined there."""
    with dev.transaction(), dev.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE _ws_diff_keys ON COMMIT DROP AS SELECT {} AS k FROM {} WITH NO DATA").format(
                sql.Identifier(key), sql.Identifier(table)
            )
        )
        with cur.copy("COPY _ws_diff_keys (k) FROM STDIN") as copy:
            for chunk in prod_keys(session, table, [key]):
                copy.write(chunk)
        cur.execute("ANALYZE _ws_diff_keys")
        cur.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {t}), (SELECT count(*) FROM _ws_diff_keys), "
                "(SELECT count(*) FROM {t} AS d WHERE NOT EXISTS (SELECT 1 FROM _ws_diff_keys p WHERE p.k = d.{k})), "
                "(SELECT count(*) FROM _ws_diff_keys AS p WHERE NOT EXISTS (SELECT 1 FROM {t} d WHERE d.{k} = p.k))"
            ).format(t=sql.Identifier(table), k=sql.Identifier(key))
        )
        dev_rows, prod_rows, missing, only = cur.fetchone()
    return TableDiff(table, dev_rows, prod_rows, missing, only)
