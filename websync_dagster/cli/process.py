"""The ``websync`` process: the command line parsed, the run's modules imported (only now: ``--version``
and ``--help`` need none of Dagster), the run stopped by a signal given its exit code, the heap kept from
the collector at exit."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from websync_dagster.cli.args import parse_args
from websync_dagster.cli.codes import INTERRUPTED
from websync_dagster.cli.heap import collector_paused, keep_heap_from_collector
from websync_dagster.cli.signals import stop_signals_noted
from websync_dagster.cli.terminal import MessageView


def import_run(*, own_process: bool) -> Callable[..., int]:
    """``runner.run``, imported with the collector paused: Dagster, the code location and the engine are
    what lives as long as the process. ``own_process``: what exists then (modules and what they hold) is
    frozen (``collector_paused``); a test's process would keep its garbage frozen."""
    with collector_paused(then_freeze=own_process):
        from websync_dagster.cli.runner import run
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """``argv`` None: the process's own command line (the ``websync`` script, ``python -m websync_dagster.cli``),
    and the process ends when this returns (see ``keep_heap_from_collector``). A run that Ctrl-C or SIGTERM
    stopped exits with 130 or 143."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    own_process = argv is None
    run = import_run(own_process=own_process)
    view = MessageView()  # how messages reach the user: live progress bars on a terminal, plain lines otherwise
    with stop_signals_noted() as noted:
        try:
            code = run(args.mode, env_file=args.env_file, quiet=args.quiet, debug=args.debug, as_json=args.json,
                       tables=args.tables, dry_run_only=args.dry_run, own_process=own_process, view=view,
                       update_newer=args.update_newer, run_id=args.run_id)
        except KeyboardInterrupt:  # outside the job (inside, it is the interrupted table's failure)
            view.error("interrupted")
            code = INTERRUPTED
    if code != 0 and noted:
        code = 128 + noted[-1]
    if own_process:
        keep_heap_from_collector()
    return code
