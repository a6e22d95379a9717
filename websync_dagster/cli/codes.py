"""The ``websync`` process's exit codes (besides 0, and 128 + a stop signal's number; see ``signals``)."""

from __future__ import annotations

#: a run failed; bad configuration; interrupted (Ctrl-C, as a shell reports SIGINT)
FAILED, BAD_CONFIG, INTERRUPTED = 1, 2, 130
