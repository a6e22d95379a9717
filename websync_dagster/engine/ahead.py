"""A run's connections opened ahead, while Dagster starts (the CLI's process): dev's connection, prod's session
(the SSH handshake, the psql on the VPS) and the tables' plans are ready when the run's step asks for them.

The CLI knows the run's settings before it opens the Dagster instance and creates the run (about a second on
this machine's loopback; the handshakes take a few round trips of a VPS link). ``open_ahead`` starts opening a
``SyncContext`` in a thread; the run's resource ``take``s it when its settings are the same. Whatever goes wrong
ahead is not said there: the context is dropped and the run opens its own, which fails with its usual one line.
"""

from __future__ import annotations

import threading

from websync_dagster.core.settings import Settings
from websync_dagster.engine.context import SyncContext


class _Ahead:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = SyncContext(settings)
        self.failed = False
        self._dropped = self._done = False
        self._state = threading.Lock()
        self.thread = threading.Thread(target=self._open, name="websync-open-ahead", daemon=True)
        self.thread.start()

    def _open(self) -> None:
        try:
            self.context.planning()  # dev's catalog and connection, prod's session and catalog
        except Exception:  # said by the run's own context, which tries again
            self.failed = True
        with self._state:
            self._done = True
            if self._dropped:
                self.context.close()

    def close(self) -> None:
        """Close the context, now if it is open, else once the thread is done with it: never waits for a
        handshake (Ctrl-C during the instance's start ends the process at once)."""
        with self._state:
            self._dropped = True
            if self._done:
                self.context.close()


_lock = threading.Lock()
_ahead: _Ahead | None = None


def open_ahead(settings: Settings) -> None:
    """Start opening the connections of a run with ``settings`` (one at a time: a new one drops the last)."""
    global _ahead
    with _lock:
        previous, _ahead = _ahead, _Ahead(settings)
    if previous is not None:
        previous.close()


def take(settings: Settings) -> SyncContext | None:
    """The context opened ahead for ``settings``, once it is open; None when there is none for them, or it
    failed (then it is closed)."""
    global _ahead
    with _lock:
        ahead, _ahead = _ahead, None
    if ahead is None:
        return None
    ahead.thread.join()
    if ahead.failed or _engine_part(ahead.settings) != _engine_part(settings):
        ahead.close()
        return None
    return ahead.context


def _engine_part(settings: Settings) -> dict[str, object]:
    """What a SyncContext reads of the settings (not where Dagster keeps its instance, which a run's resource
    does not carry)."""
    return settings.model_dump(exclude={"dagster_home", "dagster_pg_url"})


def drop() -> None:
    """Close what was opened ahead and not taken (the run never reached its step)."""
    global _ahead
    with _lock:
        ahead, _ahead = _ahead, None
    if ahead is not None:
        ahead.close()


