"""Runs one `websync` mode in this process and prints, as JSON, when the process started, its exit code
and its peak RSS, so that the benchmark can tell start-up, the Dagster run and memory apart."""

import time

STARTED = time.time()

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

from websync_dagster.cli import run  # noqa: E402

if __name__ == "__main__":
    code = run(sys.argv[1], env_file="/dev/null", quiet=True)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"process_start": STARTED, "exit": code, "peak_rss_mb": round(peak_kb / 1024, 1)}))
    sys.exit(code)
