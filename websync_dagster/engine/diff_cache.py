"""What one side of a table looked like at the last diff tick, so that the next tick re-reads only what changed.

Per bucket of ids (an ``id::text`` prefix) the file keeps, all taken from ONE snapshot:

- the *version signature*: row count and XOR of a hash of ``(id, xmin)``. It needs only the main heap, never
  the TOAST tables, and changes whenever a row of the bucket is inserted, updated or deleted (every new row
  version has a new ``xmin``; PostgreSQL >= 9.4 keeps ``xmin`` readable when it freezes a tuple);
- the *content figures*: row count and XOR of the hashes of whole rows, as the bisection compares them.

And per pair of sides, for each bucket whose content figures differed, what the bisection found in it
(missing, only in prod, changed): while both sides' figures stay the same, so does that answer, and a
lasting difference (rows prod refuses, rows prod wrote itself) is not bisected again at every tick.

While a bucket's signature is what the file says, its content figures are too, so they need not be read
again. The file is named after, and holds, the identity of what it describes: the cluster (system identifier,
server version), the database, the table (name and oid), the key, the compared columns and their types, and
the hashing scheme. Anything else (a dump/restore, another database, other columns) finds no file or a file
that does not match, and the side is hashed in full; so does a file that cannot be read or whose checksum is
wrong. The cache can make a tick cheaper, never its answer different.

Known blind spot: a change that alters how values print without writing rows (``ALTER TYPE ... RENAME
VALUE`` of an enum) is not seen until the rows are rewritten or the file removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

#: bump when the hashes or the bucket layout change: old files then no longer match
SCHEME = 1


@dataclass(frozen=True)
class BucketState:
    """One bucket, from one snapshot: ``rows`` and ``version_xor`` form its signature, ``xor`` its content."""

    rows: int
    version_xor: int
    xor: int

    @property
    def signature(self) -> tuple[int, int]:
        return self.rows, self.version_xor


@dataclass(frozen=True)
class BucketOutcome:
    """What the bisection found in a bucket whose figures differed: valid while both sides' figures are these
    (the figures stand for the contents, as everywhere in the bisection)."""

    dev_rows: int
    dev_xor: int
    prod_rows: int
    prod_xor: int
    missing: int
    only_prod: int
    changed: int

    @property
    def figures(self) -> tuple[int, int, int, int]:
        return self.dev_rows, self.dev_xor, self.prod_rows, self.prod_xor


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _keyed(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The identity as stored: with the scheme, and as JSON gives it back (tuples become lists)."""
    return json.loads(_canonical({"scheme": SCHEME, **identity}))


def _checksum(identity: Mapping[str, Any], buckets: Mapping[str, list[int]]) -> str:
    return hashlib.sha256(_canonical({"identity": identity, "buckets": buckets})).hexdigest()


def _parse(raw: Any, width: int) -> dict[str, list[int]] | None:
    if not isinstance(raw, dict):
        return None
    for figures in raw.values():
        if not (isinstance(figures, list) and len(figures) == width and all(type(v) is int for v in figures)):
            return None
    return raw


class DiffCache:
    """A directory of JSON files: one per side of a table (``BucketState`` per bucket), and one per pair of
    sides (``BucketOutcome`` per bucket that differed), each named after its identity.

    Files are replaced atomically; two ticks writing at once each leave a consistent file.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, identity: Mapping[str, Any]) -> Path:
        name = hashlib.sha256(_canonical(_keyed(identity))).hexdigest()[:32]
        return self.directory / f"{name}.json"

    def load(self, identity: Mapping[str, Any]) -> dict[str, BucketState] | None:
        """The buckets saved for exactly this side; None when there is no such file or it is damaged."""
        raw = self._read(identity, 3)
        return None if raw is None else {b: BucketState(*f) for b, f in raw.items()}

    def save(self, identity: Mapping[str, Any], buckets: Mapping[str, BucketState]) -> None:
        self._write(identity, {b: [s.rows, s.version_xor, s.xor] for b, s in buckets.items()})

    def load_outcomes(self, dev: Mapping[str, Any], prod: Mapping[str, Any]) -> dict[str, BucketOutcome]:
        """What the last bisection found in each bucket that differed between these two sides."""
        raw = self._read({"pair": {"dev": dev, "prod": prod}}, 7) or {}
        return {b: BucketOutcome(*f) for b, f in raw.items()}

    def save_outcomes(self, dev: Mapping[str, Any], prod: Mapping[str, Any],
                      outcomes: Mapping[str, BucketOutcome]) -> None:
        self._write({"pair": {"dev": dev, "prod": prod}}, {b: list(astuple(o)) for b, o in outcomes.items()})

    def _read(self, identity: Mapping[str, Any], width: int) -> dict[str, list[int]] | None:
        try:
            saved = json.loads(self.path(identity).read_bytes())
        except (OSError, ValueError):
            return None
        keyed = _keyed(identity)
        if not isinstance(saved, dict) or saved.get("identity") != keyed:
            return None
        raw = saved.get("buckets")
        if not isinstance(raw, dict) or saved.get("checksum") != _checksum(keyed, raw):
            return None
        return _parse(raw, width)

    def _write(self, identity: Mapping[str, Any], records: Mapping[str, list[int]]) -> None:
        """A failure only costs the next tick a full hash, so it is logged, not raised."""
        keyed = _keyed(identity)
        raw = dict(sorted(records.items()))
        body = _canonical({"identity": keyed, "buckets": raw, "checksum": _checksum(keyed, raw)})
        target = self.path(identity)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=f".{target.stem}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(body)
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        except OSError as exc:
            _logger.warning("diff cache %s not written (%s): the next diff hashes this table in full",
                            target, exc.strerror or type(exc).__name__)
