"""What writing a unit's rows to the run's manifest before its COMMIT costs (engine/run_files.py: the transaction
held open while the client fsyncs them, then COMMIT: one round trip more per unit) against the rows written once
prod answered (the unit sent whole, as a psql per transaction still does), over the 20 Mbit/s, 40 ms link
(benchmarks/link.py), on ``ssh_tunnel`` and ``ssh_psql`` (one psql): a full sync into a fresh prod and a 1% delta
of web_pages (those pages deleted from prod again before each run), alternating held and whole, three of each,
in one run. The engine's sync as websync_job runs it, with a run id (so with its manifest), without Dagster.

    .venv/bin/python benchmarks/held_commit.py [--scale 0.25] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dataset import generate_scaled  # noqa: E402
from benchmarks.run import PASSWORD, Bench  # noqa: E402
from benchmarks.vps_link import Vps, open_vps  # noqa: E402
from websync_dagster.core.settings import load_settings  # noqa: E402
from websync_dagster.core.tables import DECLARED_DEPS  # noqa: E402
from websync_dagster.engine.context import SyncContext  # noqa: E402
from websync_dagster.engine.run import run_tables  # noqa: E402
from websync_dagster.engine.run_id import new_run_id  # noqa: E402
from websync_dagster.transport.base import ProdSession  # noqa: E402
from websync_dagster.transport.psql import PsqlSession  # noqa: E402

MODES = ("held", "whole")


def _hold(mode: str) -> None:
    """Sessions hold a unit open before its COMMIT (``held``, websync's way) or are taken as unable to (``whole``)."""
    held = mode == "held"
    ProdSession.holds_commit = held
    PsqlSession.holds_commit = property(lambda self: held and self.one is not None)  # type: ignore[assignment]


def _sync(bench: Bench, vps: Vps, transport: str, dev_url: str, prod_url: str, n: int) -> tuple[float, int]:
    url, via = vps.via(transport, prod_url)
    settings = load_settings({"WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": url,
                              "WEBSYNC_EXPORT_DIR": str(bench.work / f"exports{n}"), **via}, env_file=None)
    bench.settle()
    started = time.perf_counter()
    with SyncContext(settings) as ctx:
        runs = list(run_tables(ctx, export=settings.tables, load=settings.tables, declared_deps=DECLARED_DEPS,
                               run_id=new_run_id()))
    seconds = time.perf_counter() - started
    if any(r.error is not None for r in runs):
        raise RuntimeError([str(r.error) for r in runs if r.error is not None])
    return seconds, sum(r.load.result.commits for r in runs if r.load is not None)


def _delete_pages(prod_url: str, ids: list[str]) -> None:
    with psycopg.connect(prod_url, autocommit=True) as prod:
        prod.execute("DELETE FROM web_pages WHERE id = ANY(%s::uuid[])", [ids])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench = Bench(Path(tempfile.mkdtemp(prefix="websync-bench-held-commit-")))
    vps = open_vps(bench, PASSWORD)
    n = 0
    try:
        dev_url = bench.fresh(bench.dev, "dev")
        with psycopg.connect(dev_url) as dev:
            rows = generate_scaled(dev, args.scale)
            pages = [r[0] for r in dev.execute("SELECT id::text FROM web_pages ORDER BY md5(id::text)").fetchall()]
        delta = pages[: max(1, len(pages) // 100)]
        print(f"x{args.scale}: {rows}; 1% delta: {len(delta)} pages (and their files)", flush=True)
        for transport in ("ssh_tunnel", "ssh_psql"):
            times: dict[tuple[str, str], list[float]] = {}
            delta_prod = bench.fresh(bench.prod, "delta")
            _hold("held")
            _sync(bench, vps, transport, dev_url, delta_prod, n := n + 1)
            for rep in range(args.repeat * 2):
                mode = MODES[rep % 2]
                _hold(mode)
                full_prod = bench.fresh(bench.prod, "full")
                full, commits = _sync(bench, vps, transport, dev_url, full_prod, n := n + 1)
                bench.drop(full_prod)
                _delete_pages(delta_prod, delta)
                one, delta_commits = _sync(bench, vps, transport, dev_url, delta_prod, n := n + 1)
                times.setdefault((mode, "full"), []).append(full)
                times.setdefault((mode, "delta"), []).append(one)
                print(f"{transport} {mode}: full {full:.2f} s ({commits} units), 1% delta {one:.2f} s "
                      f"({delta_commits} units)", flush=True)
            bench.drop(delta_prod)
            for case in ("full", "delta"):
                held, whole = (statistics.median(times[(m, case)]) for m in MODES)
                print(f"{transport} {case}: median held {held:.2f} s, whole {whole:.2f} s, held/whole "
                      f"{held / whole:.3f}", flush=True)
    finally:
        _hold("held")
        vps.link.stop()
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
