"""What the run's manifest costs a full sync: the engine's sync into a fresh empty prod, alternating with the
manifest's query of the rows each unit inserted (load/steps.py ``landed_rows``) and with that query replaced by one
that returns nothing, on the same data, three of each, in one run.

    .venv/bin/python benchmarks/manifest_cost.py [--scale 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dataset import generate_scaled  # noqa: E402
from benchmarks.run import Bench, engine_sync  # noqa: E402
from websync_dagster.core.settings import load_settings  # noqa: E402
from websync_dagster.engine.load import staged, steps  # noqa: E402
from websync_dagster.engine.plan import TablePlan  # noqa: E402
from websync_dagster.transport.base import Query, Step  # noqa: E402

WITH_MANIFEST = steps.landed_rows


def without_manifest(plan: TablePlan, *, staged: bool) -> list[Step]:
    """The same named result, empty, and nothing read."""
    return [Query("landed", sql.SQL("SELECT NULL::text AS id, NULL::text AS xmin WHERE false"))]


def full_sync(bench: Bench, dev_url: str, n: int) -> float:
    prod_url = bench.fresh(bench.prod, "p")
    settings = load_settings({"WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url,
                              "WEBSYNC_EXPORT_DIR": str(bench.work / f"exports{n}")}, env_file=None)
    seconds, _ = engine_sync(bench, settings)
    bench.drop(prod_url)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5)
    args = parser.parse_args()
    bench = Bench(Path(tempfile.mkdtemp(prefix="websync-bench-manifest-")))
    try:
        dev_url = bench.fresh(bench.dev, "dev")
        with psycopg.connect(dev_url) as dev:
            generate_scaled(dev, args.scale)
        times: dict[str, list[float]] = {"with": [], "without": []}
        for n in range(6):
            variant = "with" if n % 2 == 0 else "without"
            steps.landed_rows = staged.landed_rows = WITH_MANIFEST if variant == "with" else without_manifest
            times[variant].append(full_sync(bench, dev_url, n))
            print(f"{variant} the manifest: {times[variant][-1]:.2f} s", flush=True)
        with_s, without_s = statistics.median(times["with"]), statistics.median(times["without"])
        print(f"median with {with_s:.2f} s, without {without_s:.2f} s, ratio {with_s / without_s:.3f}")
    finally:
        steps.landed_rows = staged.landed_rows = WITH_MANIFEST
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
