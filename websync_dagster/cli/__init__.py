"""``websync sync|export|status|diff``: runs the Dagster jobs on the DAGSTER_HOME instance (so the UI shows
them) and prints what happened. Also takes the runbook's ``--export``, ``--status`` and ``--diff``.

Modules, one job each: ``args`` (the command line), ``process`` (the process's life: ``main``),
``heap`` (the garbage collector around it), ``signals`` (SIGINT/SIGTERM), ``runner`` (a mode's run),
``results`` (the run read back into rows and problems, and printed), ``display`` (the steps' messages
into Dagster's loggers), ``terminal`` (how lines and bars reach the user), ``codes`` (exit codes).
Importing any of them does no work, and this package imports only what parsing the command line needs:
Dagster and the code location are imported when a run needs them (``process.main``), so
``websync --version`` stays fast.
"""

from __future__ import annotations

from websync_dagster.cli.process import main

__all__ = ["main"]
