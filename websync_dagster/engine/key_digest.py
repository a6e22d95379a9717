"""Digests of a table's id set per bucket of ids, so that a sync streams prod's ids only where dev differs.

Each side returns, per bucket (``id::text`` cut to ``DIGEST_DEPTH`` characters, as ``diff.py`` buckets rows):
the number of ids and the XOR of ``hashtextextended(id::text, seed)`` for two seeds. Only the id column is
read (no de-TOASTing), and both sides compute the same function (``bit_xor``: Postgres >= 14). Where a
bucket's figures are the same on both sides, the two id sets are the same (a chance match of two 64-bit
XORs and the count is about 2^-128): dev holds no id of that bucket that prod lacks.

Prod's digests of every planned table are read in one query, the first time a table's delta needs them
(``ProdIdDigests``): one round trip for the whole run. Prod only gains rows (insert-only), so a bucket that
matched then still holds every dev id later in the run, also after a table committed part of its rows.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from psycopg import sql

from websync_dagster.engine.catalog import QuerySession

#: length of the ``id::text`` prefixes that make a bucket (256 buckets of uuids, as the diff's top level)
DIGEST_DEPTH = 2
_SEEDS = (1, 2)


@dataclass(frozen=True)
class BucketDigest:
    rows: int
    xor1: int
    xor2: int


Digests = dict[str, BucketDigest]


def within_buckets(key: str, prefixes: Sequence[str], length: int) -> sql.Composable:
    """Rows (alias ``t``) whose ``id::text`` cut to ``length`` characters is one of the prefixes; every row
    when there are none."""
    if not prefixes:
        return sql.SQL("true")
    return sql.SQL("left({}::text, {}) = ANY({})").format(
        sql.Identifier("t", key), sql.Literal(length), sql.Literal(list(prefixes)))


def digest_query(table: str, key: str, value: sql.Composable | None = None) -> sql.Composed:
    """Per bucket of ``table``'s ids: ``b`` (the bucket), ``n`` (ids), ``x1`` and ``x2`` (XORs of id hashes). With
    ``value`` (an expression over the row ``t``, e.g. its version), each id's hash covers that value too."""
    k = sql.Identifier("t", key)
    hashed = sql.SQL("{}::text").format(k) if value is None else sql.SQL(
        "{}::text || '/' || coalesce(({})::text, '')").format(k, value)
    xors = [sql.SQL("bit_xor(hashtextextended({}, {})) AS {}").format(
        hashed, sql.Literal(seed), sql.Identifier(f"x{i}")) for i, seed in enumerate(_SEEDS, 1)]
    return sql.SQL("SELECT left({k}::text, {d}) AS b, count(*) AS n, {xors} FROM {t} AS t GROUP BY 1").format(
        k=k, d=sql.Literal(DIGEST_DEPTH), xors=sql.SQL(", ").join(xors), t=sql.Identifier(table))


def _digests(rows: Sequence[Mapping[str, object]]) -> Digests:
    return {str(r["b"]): BucketDigest(int(r["n"]), int(r["x1"]), int(r["x2"])) for r in rows}


def read_digests(session: QuerySession, table: str, key: str, value: sql.Composable | None = None) -> Digests:
    """One side's digests of ``table`` (see ``digest_query``)."""
    return _digests(session.query(digest_query(table, key, value)))


def differing_buckets(dev: Digests, prod: Digests) -> list[str]:
    """Buckets where dev may hold an id prod lacks: dev has rows there and prod's figures are not dev's."""
    return sorted(b for b, figures in dev.items() if figures.rows and prod.get(b) != figures)


class ProdIdDigests:
    """Prod's digests of the planned tables (table -> its key column), read in one query on first use and
    kept for the run (see the module's docstring for why a later use may rely on them)."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = dict(keys)
        self._read: dict[str, Digests] | None = None
        self._lock = threading.Lock()

    def of(self, session: QuerySession, table: str) -> Digests:
        """``table``'s digests (one of the tables given), all tables read by the first call."""
        with self._lock:
            if self._read is None:
                self._read = self._read_all(session)
            return self._read[table]

    def _read_all(self, session: QuerySession) -> dict[str, Digests]:
        parts = [sql.SQL("SELECT {} AS table_name, d.* FROM ({}) AS d").format(sql.Literal(t), digest_query(t, k))
                 for t, k in self._keys.items()]
        rows = session.query(sql.SQL(" UNION ALL ").join(parts))
        return {t: _digests([r for r in rows if r["table_name"] == t]) for t in self._keys}
