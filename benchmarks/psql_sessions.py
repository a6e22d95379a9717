"""ssh_psql with one psql per session against a psql per transaction (issue 19 item 3), over the 20 Mbit/s, 40 ms
link (benchmarks/link.py), whole `websync sync` processes (exec to exit) on the same data in one run: a full sync
of each, then 1% new rows (each run into a fresh copy of the synced prod) and the no-op re-run, alternating the
two ways, ``--repeat`` of each; and the runbook's re-run through the same link, what the no-op is held against.

    .venv/bin/python benchmarks/psql_sessions.py [--scale 1] [--repeat 3] [--no-runbook] [--against TREE]

``--against TREE``: instead, this checkout's code against another checkout's (a ``git worktree`` of an older
commit), both one psql per session, each process importing its tree's package (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dataset import Scale, generate, generate_scaled  # noqa: E402
from benchmarks.run import PASSWORD, Bench, websync  # noqa: E402
from benchmarks.vps_link import open_vps, runbook_over_link, websync_over_link  # noqa: E402

WAYS = {"one psql": {}, "psql per transaction": {"WEBSYNC_PROD_PSQL_PER_TRANSACTION": "1"}}


def trees(*paths: Path) -> dict[str, dict[str, str]]:
    """A way per checkout: its commit, and the environment that makes a process import its package."""
    def commit(path: Path) -> str:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()

    return {f"{path.name} ({commit(path)})": {"PYTHONPATH": str(path.resolve())} for path in paths}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-runbook", dest="runbook", action="store_false")
    parser.add_argument("--against", type=Path, help="another checkout: its code against this one's")
    args = parser.parse_args()
    ways = WAYS if args.against is None else trees(REPO, args.against)
    print("ways: " + "; ".join(f"{w}: {env}" for w, env in ways.items()), flush=True)
    bench = Bench(Path(tempfile.mkdtemp(prefix="websync-bench-psql-")))
    vps = open_vps(bench, PASSWORD)
    counter = iter(range(1_000_000))

    def run(way: str, dev_url: str, prod_url: str) -> dict:
        home = bench.work / f"home{next(counter)}"
        home.mkdir()
        bench.settle()
        result = websync_over_link(partial(websync, bench), vps, "ssh_psql", dev_url, prod_url, home,
                                   extra=ways[way])
        if result.get("exit", 0) != 0:
            raise RuntimeError(f"{way}: {result.get('error')}")
        return result

    try:
        dev_url = bench.fresh(bench.dev, "dev")
        with psycopg.connect(dev_url) as dev:
            rows = generate_scaled(dev, args.scale)
        print(f"x{args.scale}: {rows}", flush=True)
        figures: dict[str, dict[str, list[float]]] = {way: {"full": [], "1pct": [], "noop": []} for way in ways}
        synced = {}
        for way in ways:
            synced[way] = bench.fresh(bench.prod, "p")
            result = run(way, dev_url, synced[way])
            figures[way]["full"].append(result["seconds"])
            print(f"{way}: full {result['seconds']:.2f} s, {result['wire_up'] / 1e6:.1f} MB up", flush=True)
        with psycopg.connect(dev_url) as dev:
            generate(dev, Scale().times(args.scale * 0.01), first=10_000_000)
        for n in range(2 * args.repeat):
            way = list(ways)[n % 2]
            copy = bench.fresh(bench.prod, "c", template=synced[way].rsplit("/", 1)[1])
            figures[way]["1pct"].append(run(way, dev_url, copy)["seconds"])
            bench.drop(copy)
            print(f"{way}: 1% new {figures[way]['1pct'][-1]:.2f} s", flush=True)
        for way in ways:
            run(way, dev_url, synced[way])  # the 1% into the synced prod itself: the no-ops below have nothing new
        for n in range(2 * args.repeat):
            way = list(ways)[n % 2]
            figures[way]["noop"].append(run(way, dev_url, synced[way])["seconds"])
            print(f"{way}: no-op {figures[way]['noop'][-1]:.2f} s", flush=True)
        runbook = None
        if args.runbook:
            bench.settle()
            runbook = runbook_over_link(bench, vps, dev_url, synced[list(ways)[0]])["seconds"]
            print(f"runbook re-run {runbook:.2f} s", flush=True)
        print(f"\nssh_psql through the link at x{args.scale}, medians (load average {os.getloadavg()[0]:.2f}):")
        for way, found in figures.items():
            full, pct, noop = (statistics.median(found[k]) for k in ("full", "1pct", "noop"))
            versus = f", {noop / runbook:.1%} of the runbook's re-run (<= 3%)" if runbook else ""
            print(f"  {way:22} full {full:7.2f} s | 1% new {pct:6.2f} s = {pct / full:.1%} of full (<= 8%) | "
                  f"no-op {noop:5.2f} s{versus}; each 1%: {found['1pct']}, no-op: {found['noop']}")
    finally:
        vps.link.stop()
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
