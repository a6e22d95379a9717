"""Where the time of a no-op `websync sync` process goes (run by benchmarks/run.py with the environment of
a synced prod; prints one JSON line).

    python benchmarks/noop_profile.py OUT.prof

Stages, in seconds of wall time: the interpreter's own start (exec to this script's first line: the
process's start time and the clock both counted from boot, to the clock tick), importing
`websync_dagster.cli` (the command line only), then `cli.main()` as the `websync` script calls it
(`sync --quiet`), under cProfile, split by the cumulative time of what it calls: importing the run's
modules (Dagster, psycopg, the code location's modules), opening the instance (most of it Dagster
importing its storage: SQLAlchemy, alembic), building the definitions, waiting for the pools, the
in-process run (and in it: creating the run with its planned events, the engine's `_sync`, storing the
run's events in the SQLite event log), the table, closing the instance. The parent adds the time from the
JSON line to the process's exit (interpreter teardown).
"""

import time

T_SCRIPT = time.clock_gettime(time.CLOCK_BOOTTIME)

import cProfile  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402

STAGES = {  # (file suffix, function) -> stage name
    ("cli/process.py", "import_run"): "import the run's modules (Dagster, the code location)",
    ("defs/instance.py", "open_instance"): "open the instance",
    ("websync_dagster/definitions.py", "defs"): "build the definitions",
    ("definitions_class.py", "resolve_job_def"): "resolve the job",
    ("defs/pool_wait.py", "wait_for_pools"): "wait for the pools",
    ("execute_in_process.py", "core_execute_in_process"): "the Dagster run (execute_in_process)",
    ("run_domain.py", "create_run_for_job"): "  in it: create the run (with its planned events)",
    ("defs/assets.py", "_sync"): "  in it: the engine (_sync)",
    ("sqlite_event_log.py", "store_event"): "  in it: store each event (SQLite event log)",
    ("websync_dagster/cli/results.py", "report"): "the table and the messages",
    ("instance/instance.py", "__exit__"): "close the instance",
}
COMMAND = ["websync", "sync", "--quiet", "--env-file", "/dev/null"]


def process_start() -> float:
    """Seconds from boot to this process's start (exec), from /proc (to the clock tick)."""
    ticks = int(open("/proc/self/stat").read().rpartition(")")[2].split()[19])  # noqa: SIM115
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> int:
    started, out = process_start(), sys.argv[1]
    t0 = time.time()
    from websync_dagster.cli import main as websync_main

    t1 = time.time()
    profiler = cProfile.Profile()
    sys.argv = COMMAND  # main() as the websync script calls it: the process's own command line
    code = profiler.runcall(websync_main)
    t2 = time.time()
    profiler.dump_stats(out)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    stages: dict[str, float] = {"interpreter start": T_SCRIPT - started, "import websync_dagster.cli": t1 - t0}
    for (suffix, function), stage in STAGES.items():  # in the order of STAGES
        stages[stage] = sum(cumulative for (path, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.items()
                            if name == function and path.endswith(suffix))
    stages["cli.main in all (profiled)"] = t2 - t1
    print(json.dumps({"exit": code, "stages": stages, "main_end": time.time()}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
