"""Runs one `websync` mode in this process and prints, as JSON, when the process started, its exit code
and its peak RSS, so that the benchmark can tell start-up, the Dagster run and memory apart.

Peak RSS is VmHWM from /proc/self/status: getrusage's ru_maxrss survives execve on Linux, so a child of
a big parent (the benchmark holds the generated data) would report the parent's size."""

import time

STARTED = time.time()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from websync_dagster.cli.process import import_run  # noqa: E402

if __name__ == "__main__":
    run = import_run(own_process=True)  # as the `websync` process imports it
    code = run(sys.argv[1], env_file="/dev/null", quiet=True, own_process=True)
    lines = Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    peak_kb = int(status["VmHWM"].split()[0])
    print(json.dumps({"process_start": STARTED, "exit": code, "peak_rss_mb": round(peak_kb / 1024, 1)}))
    sys.exit(code)
