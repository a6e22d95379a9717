"""Prod's triggers held off while websync updates a table's rows (WEBSYNC_UPDATE_TRIGGERS_OFF), so that an updated
row is dev's row and a restored row its before-image, on every shipped column.

Prod's ``BEFORE UPDATE`` trigger that sets ``updated_at := now()`` would give each updated row the time of the sync
(and each restore the time of the undo): the row is then newer in prod than in dev, and an undo cannot bring the
table back to its checksum. Holding it off is opt-in and names each trigger: ``ALTER TABLE ... DISABLE TRIGGER`` in
the unit's own transaction, and ``ENABLE`` again before it commits, so that prod's catalog is as it was whatever
happens (a failed or cut unit rolls both back), and no other session ever sees the trigger off. It needs prod's
user to own the table, and holds the table's ``SHARE ROW EXCLUSIVE`` lock until the unit commits: prod's own writes
to that table wait for the unit (readers do not).

Not ``session_replication_role = replica``: that needs a superuser and also skips prod's foreign-key checks and
every other trigger.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from websync_dagster.core.errors import TableSyncError
from websync_dagster.engine.catalog import TableInfo, Trigger
from websync_dagster.transport.base import Statement

SETTING = "WEBSYNC_UPDATE_TRIGGERS_OFF"
#: ``tgenabled`` of a trigger that fires in websync's sessions, and how it is enabled again
_ENABLE = {"O": sql.SQL("ENABLE TRIGGER"), "A": sql.SQL("ENABLE ALWAYS TRIGGER")}


def held_triggers(info: TableInfo, names: Sequence[str]) -> tuple[Trigger, ...]:
    """The triggers of prod's table to hold off while its rows are updated: each of ``names`` that fires in
    websync's sessions (one that is disabled, or fires only for replicas, needs nothing), refused with one line
    naming it when prod's table has no such trigger, when it is not a row trigger on UPDATE, or when prod's user
    cannot alter the table."""
    held = []
    for name in names:
        trigger = next((t for t in info.triggers if t.name == name), None)
        if trigger is None:
            known = ", ".join(t.name for t in info.triggers if t.row_update) or "none"
            raise TableSyncError(info.name, f"{SETTING}: prod's {info.name} has no trigger {name} (its row triggers "
                                 f"on UPDATE: {known}): nothing of it was written")
        if not trigger.row_update:
            raise TableSyncError(info.name, f"{SETTING}: prod's trigger {name} on {info.name} is not a row trigger "
                                 "on UPDATE: holding it off would change nothing an update does")
        if trigger.enabled in _ENABLE:
            held.append(trigger)
    if held and not info.owned:
        raise TableSyncError(info.name, f"{SETTING}: holding prod's trigger {held[0].name} off needs prod's user to "
                             f"own {info.name} (ALTER TABLE): nothing of it was written (grant the table's owner "
                             f"role to prod's user, or leave {info.name} out of {SETTING})")
    return tuple(held)


def hold_off(table: str, triggers: Sequence[Trigger]) -> list[Statement]:
    """The statements that hold ``triggers`` off for the rest of the unit's transaction."""
    return [Statement(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.Identifier(table),
                                                                          sql.Identifier(t.name)))
            for t in triggers]


def put_back(table: str, triggers: Sequence[Trigger]) -> list[Statement]:
    """The statements that enable ``triggers`` again as they were, before the unit commits."""
    return [Statement(sql.SQL("ALTER TABLE {} {} {}").format(sql.Identifier(table), _ENABLE[t.enabled],
                                                             sql.Identifier(t.name)))
            for t in triggers]
