"""What undo does with each row a run's manifest names, given what prod holds now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: what undo does to a row, by what the run did to it
UNDO_OF = {"inserted": "delete", "updated": "restore", "deleted": "insert"}


@dataclass(frozen=True)
class Entry:
    """One manifest line: what the run did to a row, its hash as the run left it, and (updated, deleted) the hash
    of its before-image."""

    table: str
    op: str
    id: str
    hash: str | None
    before: str | None

    @classmethod
    def of(cls, line: Mapping[str, Any]) -> Entry:
        return cls(line["table"], line["op"], str(line["id"]), line.get("hash"), line.get("before"))


@dataclass(frozen=True)
class Action:
    """A row undo changes: ``action`` (UNDO_OF), its id, the hash prod must still hold (None for an insert: prod
    must not hold the id) and the image to write back (restore, insert)."""

    action: str
    id: str
    expect: str | None
    image: Mapping[str, Any] | None = None


@dataclass
class Decisions:
    actions: list[Action] = field(default_factory=list)
    #: rows left alone: id -> why
    left: dict[str, str] = field(default_factory=dict)


def decide(entries: Sequence[Entry], now: Mapping[str, str], images: Mapping[tuple[str, str], Mapping[str, Any]],
           referenced: Mapping[str, str]) -> Decisions:
    """``now``: prod's rows of these ids (id -> hash); ``images``: the run's before-images by (id, hash);
    ``referenced``: ids another prod row references -> which table's."""
    out = Decisions()
    for entry in entries:
        current = now.get(entry.id)
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
        elif current != entry.hash:
            out.left[entry.id] = "changed in prod since the run"
        elif entry.op == "inserted":
            if entry.id in referenced:
                out.left[entry.id] = f"referenced by a {referenced[entry.id]} row that stays in prod"
            else:
                out.actions.append(Action("delete", entry.id, entry.hash))
        else:
            image = images.get((entry.id, entry.before or ""))
            if image is None:
                out.left[entry.id] = "its before-image is missing"
            else:
                out.actions.append(Action("restore", entry.id, entry.hash, image))
    return out
