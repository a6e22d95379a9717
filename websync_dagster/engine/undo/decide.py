"""What undo does with each row a run's manifest names, given what prod holds now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

#: what undo does to a row, by what the run did to it
UNDO_OF = {"inserted": "delete", "updated": "restore", "deleted": "insert"}


@dataclass(frozen=True)
class Entry:
    """One manifest line: what the run did to a row; an inserted row's ``xmin`` (the row version the run wrote), an
    updated row's hash as the run left it, and (updated, deleted) the hash of its before-image."""

    table: str
    op: str
    id: str
    hash: str | None
    before: str | None
    xmin: str | None = None

    @classmethod
    def of(cls, line: Mapping[str, Any]) -> Entry:
        return cls(line["table"], line["op"], str(line["id"]), line.get("hash"), line.get("before"), line.get("xmin"))


@dataclass(frozen=True)
class Action:
    """A row undo changes: ``action`` (UNDO_OF), its id, what prod must still hold (a delete: the row's ``xmin``; a
    restore: its hash; an insert: None, prod must not hold the id) and the image to write back (restore, insert)."""

    action: str
    id: str
    expect: str | None
    image: Mapping[str, Any] | None = None


@dataclass
class Decisions:
    actions: list[Action] = field(default_factory=list)
    #: rows left alone: id -> why
    left: dict[str, str] = field(default_factory=dict)


#: why a row of a unit whose commit the run never saw is left alone (engine/run_files.py): prod does not hold it
#: as the unit left it
UNSURE_ROLLED_BACK = "its unit's commit was not seen (the run stopped or lost its link) and prod holds the row as " \
    "it was before that unit: the unit was rolled back"
UNSURE_NOT_AS_LEFT = "its unit's commit was not seen (the run stopped or lost its link) and prod does not hold the " \
    "row as the unit left it: the unit was rolled back, or prod changed the row since"


def decide(entries: Sequence[Entry], now: Mapping[str, tuple[str, str]],
           images: Mapping[tuple[str, str], Mapping[str, Any]], referenced: Mapping[str, str],
           unsure: Set[str] = frozenset()) -> Decisions:
    """``now``: prod's rows of these ids (id -> (hash, xmin)); ``images``: the run's before-images by (id, hash);
    ``referenced``: ids another prod row references -> which table's; ``unsure``: ids whose unit's end the
    manifest does not hold (prod holding the row as the unit left it says the unit committed)."""
    out = Decisions()
    for entry in entries:
        current = now.get(entry.id)
        if entry.id in unsure and entry.op != "deleted" and not _as_left(entry, current):
            rolled_back = current is None if entry.op == "inserted" else current[0] == entry.before
            out.left[entry.id] = UNSURE_ROLLED_BACK if rolled_back else UNSURE_NOT_AS_LEFT
            continue
        if entry.op == "deleted":
            image = images.get((entry.id, entry.before or ""))
            if current is not None:
                out.left[entry.id] = "prod holds a row with this id again"
            elif image is None:
                out.left[entry.id] = "its before-image is missing"
            else:
                out.actions.append(Action("insert", entry.id, None, image))
            continue
        if current is None:
            out.left[entry.id] = "no longer in prod"
        elif not _as_left(entry, current):
            out.left[entry.id] = "changed in prod since the run"
        elif entry.op == "inserted":
            if entry.id in referenced:
                out.left[entry.id] = f"referenced by a {referenced[entry.id]} row that stays in prod"
            else:
                out.actions.append(Action("delete", entry.id, entry.xmin))
        else:
            image = images.get((entry.id, entry.before or ""))
            if image is None:
                out.left[entry.id] = "its before-image is missing"
            else:
                out.actions.append(Action("restore", entry.id, entry.hash, image))
    return out


def _as_left(entry: Entry, current: tuple[str, str] | None) -> bool:
    """Whether prod holds the row as the run left it: an inserted row with the run's ``xmin``, an updated one with
    its hash."""
    if current is None:
        return False
    return current[1] == entry.xmin if entry.op == "inserted" else current[0] == entry.hash
