"""The newer-wins update path's cost (issue 18), in one run, on the benchmark's data:

    .venv/bin/python benchmarks/update_newer.py [--scale 0.5] [--repeat 3] [--link-scale 0.1] [--no-link]

Into copies of a prod synced with everything: (a) a no-op `websync sync`, without and with
WEBSYNC_UPDATE_NEWER=web_pages,knowledge_base (target: within 1.1x); (b) 1% new rows (a 1% insert delta) against
1% of web_pages re-crawled in dev (new text, newer updated_at) with WEBSYNC_UPDATE_NEWER=web_pages (target: within
1.5x), over `direct` and, at ``--link-scale``, over `ssh_tunnel` through the 20 Mbit/s, 40 ms link. Times are the
Dagster run as the instance records it (`run`) and the process from exec to exit (`wall`); medians of
``--repeat``; the ratios are of medians measured in this one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dataset import Scale, generate, generate_scaled  # noqa: E402
from benchmarks.run import PASSWORD, Bench, websync  # noqa: E402
from benchmarks.vps_link import open_vps, websync_over_link  # noqa: E402

UPDATE_BOTH = {"WEBSYNC_UPDATE_NEWER": "web_pages,knowledge_base"}
UPDATE_PAGES = {"WEBSYNC_UPDATE_NEWER": "web_pages"}


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _data(bench: Bench, factor: float) -> tuple[str, str, str, str, dict[str, int]]:
    """dev, dev with 1% new rows, dev with 1% of web_pages re-crawled, and a prod synced with dev."""
    dev_url = bench.fresh(bench.dev, "dev")
    with psycopg.connect(dev_url) as dev:
        rows = generate_scaled(dev, factor)
    base = bench.fresh(bench.prod, "base")
    home = bench.work / f"home_base_{bench.counter}"
    home.mkdir()
    websync(bench, dev_url, base, home)
    inserts = bench.fresh(bench.dev, "ins", template=_name(dev_url))
    with psycopg.connect(inserts) as dev:
        generate(dev, Scale().times(factor * 0.01), first=10_000_000)
    updates = bench.fresh(bench.dev, "upd", template=_name(dev_url))
    with psycopg.connect(updates, autocommit=True) as dev:
        n = max(rows["web_pages"] // 100, 1)
        dev.execute("UPDATE web_pages SET extracted_text = extracted_text || ' (re-crawled)' "
                    "WHERE id IN (SELECT id FROM web_pages ORDER BY id LIMIT %s)", [n])
    return dev_url, inserts, updates, base, rows


def _case(bench: Bench, name: str, dev_url: str, base: str, via: dict[str, str] | None, link=None) -> dict:
    prod = bench.fresh(bench.prod, name, template=_name(base))
    home = bench.work / f"home_{name}_{bench.counter}"
    home.mkdir()
    bench.settle()
    if link is None:
        result = websync(bench, dev_url, prod, home, via=via)
    else:
        result = websync_over_link(lambda d, p, h, **kw: websync(bench, d, p, h, **kw), link, "ssh_tunnel", dev_url,
                                   prod, home, extra=via)
        result["seconds"] = result["run_s"]
    bench.drop(prod)
    return result


def measure(bench: Bench, factor: float, repeat: int, link_factor: float | None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    dev_url, inserts, updates, base, rows = _data(bench, factor)
    print(f"x{factor}: {rows}", flush=True)
    for _ in range(repeat):
        out.setdefault("noop", []).append(_case(bench, "noop", dev_url, base, None))
        out.setdefault("noop_update_newer", []).append(_case(bench, "noopu", dev_url, base, UPDATE_BOTH))
        out.setdefault("insert_1pct_direct", []).append(_case(bench, "ins", inserts, base, None))
        out.setdefault("update_1pct_direct", []).append(_case(bench, "upd", updates, base, UPDATE_PAGES))
    if link_factor:
        vps = open_vps(bench, PASSWORD)
        try:
            dev_url, inserts, updates, base, rows = _data(bench, link_factor)
            print(f"link x{link_factor}: {rows}", flush=True)
            for _ in range(repeat):
                out.setdefault("insert_1pct_link", []).append(_case(bench, "lins", inserts, base, None, vps))
                out.setdefault("update_1pct_link", []).append(_case(bench, "lupd", updates, base, UPDATE_PAGES, vps))
        finally:
            vps.link.stop()
    return out


def _median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def report(out: dict[str, list[dict]]) -> list[str]:
    lines = ["| case | run s (median) | wall s (median) | rows inserted |", "| --- | --- | --- | --- |"]
    for name, results in out.items():
        lines.append(f"| {name} | {_median(results, 'seconds'):.2f} | {_median(results, 'wall_s'):.2f} | "
                     f"{_median(results, 'rows_inserted'):.0f} |")
    pairs = [("noop_update_newer", "noop", 1.1), ("update_1pct_direct", "insert_1pct_direct", 1.5),
             ("update_1pct_link", "insert_1pct_link", 1.5)]
    for a, b, target in pairs:
        if a in out and b in out:
            for key in ("seconds", "wall_s"):
                ratio = _median(out[a], key) / _median(out[b], key)
                lines.append(f"{a} / {b} ({'run' if key == 'seconds' else 'wall'}): {ratio:.2f} (target <= {target})")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    lines.append(f"load average: {os.getloadavg()}; commit {commit.stdout.strip()}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--link-scale", type=float, default=0.1)
    parser.add_argument("--no-link", dest="link", action="store_false")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="websync-bench-update-"))
    bench = Bench(work)
    try:
        out = measure(bench, args.scale, args.repeat, args.link_scale if args.link else None)
        for line in report(out):
            print(line, flush=True)
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
