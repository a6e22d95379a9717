"""What batching a transaction's statements saves over the VPS link (issue 19 item 4): the engine's full sync
into a fresh empty prod over ``ssh_tunnel`` through the 20 Mbit/s, 40 ms link (benchmarks/link.py), alternating
with the statements batched (transport/batches.py: a unit is three round trips) and one round trip each
(``PsycopgSession.batched = False``), on the same data, three of each, in one run.

    .venv/bin/python benchmarks/round_trips.py [--scale 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dataset import generate_scaled  # noqa: E402
from benchmarks.run import PASSWORD, Bench, engine_sync  # noqa: E402
from benchmarks.vps_link import Vps, open_vps  # noqa: E402
from websync_dagster.core.settings import load_settings  # noqa: E402
from websync_dagster.transport.direct import PsycopgSession  # noqa: E402


def full_sync(bench: Bench, vps: Vps, dev_url: str, n: int) -> dict[str, float]:
    prod_url = bench.fresh(bench.prod, "p")
    url, via = vps.via("ssh_tunnel", prod_url)
    settings = load_settings({"WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": url,
                              "WEBSYNC_EXPORT_DIR": str(bench.work / f"exports{n}"), **via}, env_file=None)
    seconds, runs = engine_sync(bench, settings)
    commits = sum(r.load.result.commits for r in runs if r.load is not None)
    bench.drop(prod_url)
    return {"seconds": seconds, "commits": commits}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.1)
    args = parser.parse_args()
    bench = Bench(Path(tempfile.mkdtemp(prefix="websync-bench-round-trips-")))
    vps = open_vps(bench, PASSWORD)
    try:
        dev_url = bench.fresh(bench.dev, "dev")
        with psycopg.connect(dev_url) as dev:
            rows = generate_scaled(dev, args.scale)
        print(f"x{args.scale}: {rows}", flush=True)
        times: dict[str, list[float]] = {"batched": [], "one round trip each": []}
        for n in range(6):
            variant = "batched" if n % 2 == 0 else "one round trip each"
            PsycopgSession.batched = variant == "batched"
            result = full_sync(bench, vps, dev_url, n)
            times[variant].append(result["seconds"])
            print(f"{variant}: {result['seconds']:.2f} s, {result['commits']} commit units", flush=True)
        batched, each = statistics.median(times["batched"]), statistics.median(times["one round trip each"])
        print(f"median batched {batched:.2f} s, one round trip each {each:.2f} s, ratio {batched / each:.3f}")
    finally:
        PsycopgSession.batched = True
        vps.link.stop()
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
