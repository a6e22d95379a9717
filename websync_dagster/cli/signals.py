"""The signals that stop a run: SIGTERM stops it as Ctrl-C does, and which of them arrived is noted, for
the exit code (128 + the signal's number, as a shell reports it)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

#: the signals that stop a run; a run they stopped exits with 128 + the signal's number, as a shell reports it
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals_noted() -> Iterator[list[int]]:
    """SIGTERM (cron, systemd, docker stop) stops a run as Ctrl-C does: it raises KeyboardInterrupt, and while
    a job runs Dagster's own SIGINT handler takes both (the step is interrupted). The stop signals that
    arrived are in the list once the block ends, read from the signal wakeup fd (written whichever Python
    handler runs). Outside the main thread, nothing is changed or noted."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    on_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield noted
    finally:
        signal.set_wakeup_fd(wakeup)
        signal.signal(signal.SIGTERM, on_term)
        with contextlib.suppress(BlockingIOError):
            noted.extend(n for n in os.read(read_end, 1024) if n in STOP_SIGNALS)
        os.close(read_end)
        os.close(write_end)
