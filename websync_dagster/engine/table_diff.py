"""What the diff says of one table (``diff.py``'s result): counts, and for a table opted in to newer-wins updates
its changed rows by version (``version_split.py``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class TableDiff:
    table: str
    dev_rows: int
    prod_rows: int
    missing_in_prod: int
    only_in_prod: int
    changed: int
    queries: int = 0  # per side
    ids_compared: int = 0  # (id, hash) pairs fetched from each side, at most
    rehashed_buckets: int = 0  # top buckets whose whole rows were hashed, both sides (all without a cache)
    #: of the rows changed, those whose version dev holds newer, prod holds newer, or both the same; and the rows that
    #: differ only in the version, not counted as changed (a table opted in to newer-wins updates, see
    #: version_split.py; None for the others: their version is not compared)
    newer_in_dev: int | None = None
    newer_in_prod: int | None = None
    same_version_differs: int | None = None
    version_only: int | None = None
    version_column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        split = "" if self.newer_in_dev is None or not self.changed else (
            f" ({self.newer_in_dev} newer in dev, {self.newer_in_prod} newer in prod, {self.same_version_differs} "
            "same version)")
        stamped = f"; {self.version_only} differ only in {self.version_column}, content the same" if (
            self.version_only) else ""
        return (f"{self.table}: {self.missing_in_prod} missing in prod, {self.only_in_prod} only in prod, "
                f"{self.changed} changed{split}{stamped}")

    def with_versions(self, version_column: str, newer_in_dev: int, newer_in_prod: int, version_only: int = 0, *,
                      version_compared: bool = True) -> TableDiff:
        """The changed rows split by version. ``newer_in_dev`` / ``newer_in_prod``: rows whose versions and content
        differ; ``version_only``: rows whose versions differ and nothing else. When the version is a compared column
        (``version_compared``), every row whose version differs is among the changed rows: the version-only ones
        are taken out of them; the rest of the changed rows have the same version on both sides."""
        changed = max(self.changed - version_only, 0) if version_compared else self.changed
        return replace(self, changed=changed, newer_in_dev=newer_in_dev, newer_in_prod=newer_in_prod,
                       same_version_differs=max(changed - newer_in_dev - newer_in_prod, 0),
                       version_only=version_only, version_column=version_column)

    @property
    def in_sync(self) -> bool:
        return not (self.missing_in_prod or self.only_in_prod or self.changed)
