"""The files a run leaves for undo: its manifest (``<export dir>/manifests/<run id>.jsonl``: per table the ids it
inserted, updated or deleted: an inserted row with its ``xmin``, the version of the row the run wrote; an updated
one with its hash as the run left it and its before-image's hash; a deleted one with its before-image's hash) and,
per table, the before-images of the rows it changed (``<export dir>/before/<table>_<run id>.jsonl``), each written
and fsynced before the change is committed (images) or as soon as it is (manifest).

Lines are JSON objects; a run's files are appended to by its attempts (a retry after a lost link adds to them).

Each commit unit's fate is in the manifest too (``op: "unit"``). Where the session can hold a transaction open
(``ProdSession.holds_commit``), the unit's rows are written, each naming the unit, with a ``committing`` line, in
one fsynced write after prod ran the unit and before its COMMIT is sent; then ``committed`` or ``rolled back``.
A unit left ``committing`` (the process killed, or the link lost, as it committed) has its rows in the manifest
all the same: undo acts on those prod holds as the unit left them (it committed) and lists the others (it rolled
back, or prod changed them since). No row can be in prod by a unit the manifest does not name.

A session that sends each transaction whole (ssh_psql with a psql per transaction) writes a ``sending`` line,
fsynced before the unit goes to prod, then its rows with ``committed`` once prod answered. A unit left ``sending``
may have rows in prod the manifest does not name, and undo says so (``unrecorded_units``) rather than passing
over them in silence.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websync_dagster.core.errors import SyncError

MANIFEST_SUBDIR = "manifests"
BEFORE_SUBDIR = "before"
#: what a manifest line says was done to a row
OPS = ("inserted", "updated", "deleted")
#: a manifest line about a commit unit, not a row, and the states it names
UNIT = "unit"
SENDING, COMMITTING, COMMITTED, ROLLED_BACK = "sending", "committing", "committed", "rolled back"


class ManifestUnwritable(SyncError):
    """A unit's rows could not be written to the manifest before its COMMIT: the unit was rolled back."""


def new_unit_id() -> str:
    """A commit unit's id in the manifest (random: another process may append to the same run's manifest)."""
    return secrets.token_hex(6)


def manifest_path(export_dir: Path, run_id: str) -> Path:
    return export_dir / MANIFEST_SUBDIR / f"{run_id}.jsonl"


def before_path(export_dir: Path, table: str, run_id: str) -> Path:
    return export_dir / BEFORE_SUBDIR / f"{table}_{run_id}.jsonl"


def _append(path: Path, lines: Iterable[Mapping[str, Any]]) -> int:
    """Append JSON lines to ``path`` and fsync it (and its folder, the first time); the number written."""
    text = "".join(json.dumps(dict(line), ensure_ascii=False, sort_keys=True) + "\n" for line in lines)
    if not text:
        return 0
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    if created:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return text.count("\n")


@dataclass
class RunFiles:
    """The manifest and before-image files of one run (``run_id``: the Dagster run's id)."""

    export_dir: Path
    run_id: str
    #: table -> before-image lines written this run
    images: dict[str, int] = field(default_factory=dict)
    #: table -> manifest lines written this run
    recorded: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def manifest(self) -> Path:
        return manifest_path(self.export_dir, self.run_id)

    def before(self, table: str) -> Path:
        return before_path(self.export_dir, table, self.run_id)

    def start(self) -> None:
        """Create the run's manifest, empty: every run that loads has one (undo of a run that changed nothing has
        nothing to do, rather than no manifest to read)."""
        if not self.manifest.exists():
            self.manifest.parent.mkdir(parents=True, exist_ok=True)
            self.manifest.touch()

    def keep_before_images(self, table: str, images: Iterable[Mapping[str, Any]]) -> None:
        """Write (and fsync) the before-images ``{"id", "hash", "row"}`` of rows about to be changed: a unit whose
        images cannot be written is not sent (the error says so)."""
        try:
            n = _append(self.before(table), ({"table": table, **image} for image in images))
        except OSError as exc:
            raise SyncError(f"{table}: the before-images could not be written to {self.before(table)} ({exc}); "
                            "nothing of this unit was changed in prod") from exc
        self.images[table] = self.images.get(table, 0) + n

    def sending(self, table: str, what: str, **detail: Any) -> str:
        """Note (fsynced) that a unit of ``table`` is about to go to prod, ``what`` it does (an op of ``OPS``) and
        where its rows are (``detail``); the unit's id (random: another process may append to the same run's
        manifest), for ``record`` or ``rolled_back``. A unit that cannot be noted is not sent."""
        unit = new_unit_id()
        with self._lock:
            try:
                _append(self.manifest, [{"table": table, "op": UNIT, "unit": unit, "state": SENDING, "does": what,
                                         **detail}])
            except OSError as exc:
                raise SyncError(f"{table}: the manifest {self.manifest} could not be written ({exc}); nothing of this "
                                "unit was sent to prod") from exc
        return unit

    def committing(self, table: str, unit: str, rows_by_op: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Before ``unit``'s COMMIT is sent: what it did (per op of ``OPS``, its rows ``{"id", "hash" or "xmin",
        ...}``), each line naming the unit, and that it is committing, in one fsynced write. One that cannot be
        written raises: the caller then rolls the unit back, so no row is in prod that the manifest does not name."""
        lines = []
        for op, rows in rows_by_op.items():
            if op not in OPS:
                raise ValueError(f"manifest op must be one of {OPS}, not {op!r}")
            lines += [{"table": table, "op": op, "unit": unit, **row} for row in rows]
        mark = {"table": table, "op": UNIT, "unit": unit, "state": COMMITTING, "does": ", ".join(rows_by_op)}
        with self._lock:
            try:
                _append(self.manifest, [*lines, mark])
            except OSError as exc:
                raise ManifestUnwritable(f"the run's manifest {self.manifest} could not be written ({exc}): the unit "
                                         "was rolled back before its commit, nothing of it is in prod") from exc
        self.recorded[table] = self.recorded.get(table, 0) + len(lines)

    def committed(self, table: str, unit: str) -> None:
        """Note that prod committed a unit noted ``committing``; not noted, undo finds it out from prod."""
        with self._lock, contextlib.suppress(OSError):
            _append(self.manifest, [{"table": table, "op": UNIT, "unit": unit, "state": COMMITTED}])

    def rolled_back(self, table: str, unit: str) -> None:
        """Note that prod rolled the unit back (it said so); a unit whose end is unknown is left as it was noted."""
        with self._lock, contextlib.suppress(OSError):  # not noted: undo reads the unit as one it cannot vouch for
            _append(self.manifest, [{"table": table, "op": UNIT, "unit": unit, "state": ROLLED_BACK}])

    def record(self, table: str, op: str, rows: Iterable[Mapping[str, Any]], unit: str | None = None) -> None:
        """Add to the manifest what a committed unit did: ``op`` (``OPS``) on rows ``{"id", "hash", ...}``, and (with
        its id from ``sending``) that ``unit`` committed, in the same write."""
        if op not in OPS:
            raise ValueError(f"manifest op must be one of {OPS}, not {op!r}")
        lines = [{"table": table, "op": op, **row} for row in rows]
        marks = [] if unit is None else [{"table": table, "op": UNIT, "unit": unit, "state": COMMITTED}]
        with self._lock:
            try:
                _append(self.manifest, [*lines, *marks])
            except OSError as exc:
                raise SyncError(f"{table}: the manifest {self.manifest} could not be written ({exc}); the unit is "
                                "committed in prod, so undo of this run will not see its rows") from exc
        self.recorded[table] = self.recorded.get(table, 0) + len(lines)

    def before_file(self, table: str) -> str | None:
        return str(self.before(table)) if self.images.get(table) else None

    def manifest_file(self) -> str | None:
        return str(self.manifest) if self.manifest.exists() else None


def _lines(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_manifest(export_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's manifest lines; a run without one is said as such."""
    path = manifest_path(export_dir, run_id)
    if not path.is_file():
        raise SyncError(f"no manifest for run {run_id} ({path}): that run changed nothing in prod, or its files "
                        "were written under another WEBSYNC_EXPORT_DIR")
    return _lines(path)


@dataclass
class ManifestRows:
    """What undo acts on (``rows_to_undo``): the row lines, and the ids among them (by table) whose unit's end the
    manifest does not hold: prod says whether it committed."""

    lines: list[dict[str, Any]]
    unsure: dict[str, set[str]]


def rows_to_undo(lines: Iterable[Mapping[str, Any]]) -> ManifestRows:
    """The manifest's row lines but those of units prod rolled back, and those of a unit left ``committing`` whose
    row a later unit of the run sent again (that retry found the row still to do: the unit had not committed)."""
    lines = list(lines)
    state: dict[str, str] = {}
    for line in lines:
        if line.get("op") == UNIT:
            state[line["unit"]] = line.get("state", "")
    rows = [line for line in lines if line.get("op") in OPS and state.get(line.get("unit", "")) != ROLLED_BACK]
    out = ManifestRows([], {})
    later: set[tuple[str, str]] = set()
    for line in reversed(rows):
        key = (line["table"], str(line["id"]))
        if state.get(line.get("unit", "")) == COMMITTING:
            if key in later:
                continue
            out.unsure.setdefault(key[0], set()).add(key[1])
        later.add(key)
        out.lines.append(dict(line))
    out.lines.reverse()
    return out


def unrecorded_units(lines: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per table, the ``sending`` lines of the units whose end the manifest does not hold (see the module). An update
    unit's rows that a later unit of the run sent again are not counted: the retry read prod's versions afresh and
    found them still older, so the unit whose end is unknown did not update them."""
    begun: dict[str, dict[str, Any]] = {}
    ended: set[str] = set()
    for line in lines:
        if line.get("op") == UNIT:
            if line.get("state") == SENDING:
                begun[line["unit"]] = dict(line)
            else:
                ended.add(line["unit"])
    found: dict[str, list[dict[str, Any]]] = {}
    order = list(begun)  # the order they were begun
    for n, unit in enumerate(order):
        line = begun[unit]
        if unit in ended:
            continue
        if line.get("does") == "updated":
            later = {i for u in order[n + 1:] if begun[u]["table"] == line["table"] for i in begun[u].get("ids", ())}
            line["ids"] = [i for i in line.get("ids", ()) if i not in later]
            if not line["ids"]:
                continue
        found.setdefault(line["table"], []).append(line)
    return found


def read_before_images(export_dir: Path, table: str, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The run's before-images of ``table``, by (id, hash of the row they show)."""
    path = before_path(export_dir, table, run_id)
    if not path.is_file():
        return {}
    return {(line["id"], line["hash"]): line["row"] for line in _lines(path)}
