"""The garbage collector around what lives as long as the ``websync`` process: paused while it is built,
frozen once it is (the collector's passes over it find nothing to free), and the heap frozen at the end so
that the interpreter's collections at exit skip it."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused(*, then_freeze: bool) -> Iterator[None]:
    """No garbage collection inside (unless the caller had it off already), for building what lives as long
    as the process: Dagster and the code location's ~200k objects when imported, Dagster's storage when the
    first instance is opened. The collector's passes over them find nothing to free (they were ~0.2 s of a
    no-op ``websync sync``). ``then_freeze``: every object there is then is left out of the collector's
    passes for good (``gc.freeze``), before it is turned on again; else its first pass goes through all that
    was built meanwhile."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if then_freeze:
            gc.freeze()
        if collecting:
            gc.enable()


def keep_heap_from_collector() -> None:
    """Every object there is now left out of the garbage collector's passes (``gc.freeze``), once the run is
    over, so that the interpreter's own collections at exit skip the heap: they were 0.4-0.7 s of a no-op
    ``websync sync``. Only where the process ends with the run (a test calling ``main`` would keep its
    garbage). What is frozen is still freed at exit when nothing refers to it any more; only reference
    cycles are not looked for, and the process ending frees their memory. No file is left to them: the
    run's files are closed when it ends, the instance is closed, the messages are flushed as they are
    printed, and logging flushes its handlers at exit."""
    gc.freeze()
