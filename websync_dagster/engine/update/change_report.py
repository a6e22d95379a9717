"""The change report of the update path: per column, how many of the rows to update change it, and which columns
change together; in ``sync --dry-run --json`` and as Dagster table metadata of ``<table>/prod_upserted``.

Both sides' rows are compared in their text forms, read under the same fixed settings (engine/row_image.py); the
table of them is pandas' (imported here only, when there are rows to report on: a sync with nothing newer never
imports it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.row_image import fixed_text_forms, images_query
from websync_dagster.transport.base import ProdSession, Query

#: rows of one read of both sides' images
_READ_ROWS = 1000
#: the columns-changed-together label of a row whose reported columns are all dev's already
NO_COLUMN = "(no column)"


def reported_columns(plan: TablePlan) -> list[str]:
    """The columns an update writes with dev's value: shipped, but the key and the table's overrides."""
    return [c for c in plan.shipped if c != plan.key and c not in plan.overrides]


@dataclass
class ChangeCounts:
    rows: int = 0
    #: column -> rows whose value changes
    columns: dict[str, int] = field(default_factory=dict)
    #: "a, b" (the columns that change together) -> rows
    together: dict[str, int] = field(default_factory=dict)

    def add(self, dev: Mapping[str, Mapping[str, Any]], prod: Mapping[str, Mapping[str, Any]],
            columns: Sequence[str]) -> None:
        """Count the changes of the rows both ``dev`` and ``prod`` (id -> image) hold."""
        ids = sorted(dev.keys() & prod.keys())
        if not ids:
            return
        import pandas as pd  # only when a report is built (see the module's docstring)

        dev_frame = pd.DataFrame([dev[i] for i in ids], index=ids).reindex(columns=list(columns))
        prod_frame = pd.DataFrame([prod[i] for i in ids], index=ids).reindex(columns=list(columns))
        changed = dev_frame.fillna("\0null").ne(prod_frame.fillna("\0null"))
        self.rows += len(ids)
        for column, n in changed.sum().items():
            if n:
                self.columns[str(column)] = self.columns.get(str(column), 0) + int(n)
        patterns = changed.apply(lambda r: ", ".join(c for c in columns if r[c]) or NO_COLUMN, axis=1).value_counts()
        for pattern, n in patterns.items():
            self.together[str(pattern)] = self.together.get(str(pattern), 0) + int(n)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": dict(sorted(self.columns.items(), key=lambda kv: -kv[1])),
                "together": dict(sorted(self.together.items(), key=lambda kv: -kv[1]))}


def dev_images(dev: psycopg.Connection, plan: TablePlan, ids: Sequence[str], columns: Sequence[str]
               ) -> dict[str, dict[str, Any]]:
    """Dev's rows of ``ids``, each column's text form under the fixed settings."""
    key_type = (plan.dev or plan.prod).column(plan.key).type
    with dev.transaction(), dev.cursor() as cur:
        cur.execute(fixed_text_forms().query)
        cur.execute(images_query(plan.table, plan.key, key_type, ids, columns))
        return {i: row for i, row in cur.fetchall()}


def change_report(dev: psycopg.Connection, prod: ProdSession, plan: TablePlan, ids: Sequence[str]) -> dict[str, Any]:
    """What updating the rows ``ids`` would change (the dry run), read from both sides."""
    counts, columns = ChangeCounts(), reported_columns(plan)
    for start in range(0, len(ids), _READ_ROWS):
        chunk = ids[start:start + _READ_ROWS]
        prod_rows = prod.run_transaction([fixed_text_forms(), Query("images", images_query(
            plan.table, plan.key, plan.prod.column(plan.key).type, chunk, columns))]).rows("images")
        counts.add(dev_images(dev, plan, chunk, columns), {r["id"]: r["row"] for r in prod_rows}, columns)
    return counts.to_dict()
