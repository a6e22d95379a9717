"""Of the rows a table opted in to newer-wins updates holds on both sides with different versions, which ones differ
in nothing else: the diff's ``version_only`` rows.

Prod's ``BEFORE UPDATE`` trigger sets ``updated_at`` to the time of every update, websync's too: a row websync
updated holds dev's content with a version newer in prod, and dev touching a row without changing it makes its
version newer in dev. Such a row is in sync but for its version; counted as changed, it would be reported at every
diff until dev changes it again. The rows whose versions differ are already known (``find_newer``: per-bucket
digests of (id, version), then ids and versions only where a bucket differs); only for those is a hash of the
compared columns but the version read, on each side, one query per chunk of ids: no other row's text is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from psycopg import sql

from websync_dagster.engine.diff import TransactionSession, hashed_columns
from websync_dagster.engine.plan import TablePlan
from websync_dagster.engine.row_image import fixed_text_forms, key_array
from websync_dagster.engine.update.candidates import Newer
from websync_dagster.transport.base import Query

#: ids per query (a typed array literal of that many ids)
CHUNK_IDS = 1000


@dataclass(frozen=True)
class VersionSplit:
    """The rows both sides hold by id with different versions, by whether anything else differs."""

    #: rows whose other compared columns differ too, by the side that holds the newer version
    newer_in_dev: int
    newer_in_prod: int
    #: rows whose compared columns but the version are the same on both sides
    version_only: int
    #: whether the version is one of the diff's compared columns (it is unless the table overrides it): then every
    #: row whose version differs is one of the diff's changed rows, the version-only ones too
    version_compared: bool


def content_columns(plan: TablePlan) -> list[str]:
    """The diff's compared columns without the version column."""
    return [c for c in hashed_columns(plan) if c != plan.version]


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), CHUNK_IDS):
        yield ids[start:start + CHUNK_IDS]


def _content_query(plan: TablePlan, key_type: str, ids: Sequence[str]) -> sql.Composed:
    values = sql.SQL(", ").join(sql.Identifier("t", c) for c in [plan.key, *content_columns(plan)])
    return sql.SQL("SELECT t.{k}::text AS id, md5(ROW({values})::text) AS h FROM {t} AS t WHERE t.{k} = ANY({ids})"
                   ).format(k=sql.Identifier(plan.key), values=values, t=sql.Identifier(plan.table),
                            ids=key_array(ids, key_type))


def content_hashes(session: TransactionSession, plan: TablePlan, key_type: str, ids: Sequence[str]
                   ) -> dict[str, str]:
    """id -> hash of the compared columns but the version, of the rows of ``ids`` the side holds; the values printed
    under the same fixed settings on both sides (``fixed_text_forms``), so that equal values hash the same."""
    hashes: dict[str, str] = {}
    for chunk in _chunks(ids):
        results = session.run_transaction([fixed_text_forms(), Query("content", _content_query(plan, key_type, chunk))])
        hashes.update({r["id"]: r["h"] for r in results.rows("content")})
    return hashes


def split_versions(dev: TransactionSession, prod: TransactionSession, plan: TablePlan, newer: Newer) -> VersionSplit:
    """``newer``'s rows (``find_newer`` of ``plan``) split into those whose content differs, by the side that holds
    them newer, and those that differ only in the version. A row a side no longer holds when its hash is read is
    counted as differing (it is not said to be in sync)."""
    ids = [*newer.ids, *newer.prod_ids]
    prod_type = plan.prod.column(plan.key).type
    dev_type = plan.dev.column(plan.key).type if plan.dev is not None else prod_type
    dev_h, prod_h = content_hashes(dev, plan, dev_type, ids), content_hashes(prod, plan, prod_type, ids)
    same = {i for i in ids if i in dev_h and dev_h[i] == prod_h.get(i)}
    return VersionSplit(newer_in_dev=sum(1 for i in newer.ids if i not in same),
                        newer_in_prod=sum(1 for i in newer.prod_ids if i not in same),
                        version_only=len(same), version_compared=plan.version in hashed_columns(plan))
