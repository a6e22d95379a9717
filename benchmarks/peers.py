"""Sling and dlt side by side with websync on the benchmark's data, in one run (issue 19 item 1).

    make bench-peers                    # the peers' venv (benchmarks/.peers-venv), then this at the default scale
    .venv/bin/python benchmarks/peers.py [--scale 0.5] [--json FILE] [--skip-diff]

The peers run from their own venv, ``benchmarks/.peers-venv`` (PyPI only: ``sling-linux-amd64``, whose wheel ships
Sling's binary, ``dlt[postgres]`` with its ``sql_database`` source, ``reladiff``); websync runs from this venv, as
``benchmarks/run.py`` runs it. The two embedded servers, the data (``generate_scaled``) and websync's run are
``benchmarks/run.py``'s and ``benchmarks/dataset.py``'s.

Each tool configuration gets its own prod (the benchmark's prod schema, empty) and goes through the cases in order
(``benchmarks/peers_cases.py``: full sync, no-op re-run, new rows, prod rows in the way of new dev rows). A
configuration that fails the full sync (a tool's documented insert-only mode, here) is not run further: its error is
quoted and the next configuration is the closest one that works.

Correctness is prod's, not the tools' logs: after each run, prod's row count and checksum per table against what an
insert-only sync should have left there (``benchmarks/peers_check.py``).

The configurations (Sling's, dlt's, websync's) are ``benchmarks/peers_tools.py``'s; times are the whole command,
from the shell to its exit (wall clock). Then ``websync diff`` against ``reladiff`` (``benchmarks/peers_diff.py``)
with prod equal to dev, 1% of rows missing in prod, 1% changed in prod. This module runs it all and reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dataset import generate_scaled  # noqa: E402
from benchmarks.peers_cases import cases  # noqa: E402
from benchmarks.peers_check import TABLES, expected_after, prod_figures, schema_changes, verdict  # noqa: E402
from benchmarks.peers_diff import diff_section  # noqa: E402
from benchmarks.peers_tools import dlt_config, sling_binary, sling_config, versions, websync_config  # noqa: E402
from benchmarks.run import Bench  # noqa: E402


def measure(bench: Bench, factor: float, skip_diff: bool) -> dict:
    """Every configuration through every case (each line printed as it comes), then the diff: the run's figures."""
    dev_url = bench.fresh(bench.dev, "peers_dev")
    started = time.perf_counter()
    with psycopg.connect(dev_url) as dev:
        rows = generate_scaled(dev, factor)
    print(f"dev at x{factor}: {rows} ({time.perf_counter() - started:.0f} s to generate)", flush=True)
    pristine = bench.prod.url("tpl")
    columns = {t: bench.shared_columns(dev_url, pristine, t) for t in TABLES}
    with psycopg.connect(pristine) as conn:
        types = {t: dict(conn.execute("SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
                                      "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", [t]))
                 for t in TABLES}
    configs = [
        websync_config(bench, dev_url),
        sling_config("sling documented", "documented", dev_url, columns, types),
        sling_config("sling staged", "staged", dev_url, columns, types),
        sling_config("sling staged+cursor", "staged_cursor", dev_url, columns, types),
        dlt_config("dlt documented", "documented", dev_url, columns, types),
        dlt_config("dlt working", "working", dev_url, columns, types),
        dlt_config("dlt working+cursor", "cursor", dev_url, columns, types),
    ]
    prods, homes, figures = {}, {}, {}
    for config in configs:
        prods[config.name] = bench.fresh(bench.prod, "peer")
        homes[config.name] = Path(tempfile.mkdtemp(prefix=config.tool + "_", dir=bench.work))
        config.prepare(prods[config.name])
        figures[config.name] = prod_figures(prods[config.name], columns)
    for case in cases(dev_url, factor, columns):
        new = case.dev_change()
        for config in configs:
            if config.failed:
                continue
            prod_url = prods[config.name]
            if case.prod_change is not None:
                case.prod_change(prod_url, new)
                figures[config.name] = prod_figures(prod_url, columns)
            expected, case_only = expected_after(dev_url, prod_url, columns, figures[config.name],
                                                 {t: ids for t, ids in new.items() if t in TABLES})
            bench.settle()
            result = config.run(prod_url, homes[config.name])
            figures[config.name] = prod_figures(prod_url, columns)
            result["right"], result["detail"] = verdict(figures[config.name], expected, case_only)
            config.results[case.name] = result
            print(f"  {case.name:12} {config.name:22} {result['seconds']:7.2f} s exit {result['exit']} "
                  f"{result['detail']}{' | ' + result['error'] if result['error'] else ''}", flush=True)
            if case.name == "full" and result["exit"] != 0:
                config.failed = result["error"]
    labels = [(c.name, c.label) for c in cases(dev_url, 0, columns)]
    out = {"factor": factor, "rows": rows, "columns": columns, "cases": labels,
           "configs": [{"name": c.name, "tool": c.tool, "describe": c.describe, "failed": c.failed,
                        "results": c.results, "schema_changes": schema_changes(prods[c.name], pristine)}
                       for c in configs]}
    if not skip_diff:
        out["diff"] = diff_section(bench, dev_url, columns)
    return out


def cell(result: dict | None) -> str:
    if result is None:
        return "—"
    status = "ok" if result["right"] else "WRONG"
    if result["exit"] != 0:
        status = f"exit {result['exit']}, " + status
    return f"{result['seconds']:.1f} s {status}"


def report(run: dict) -> list[str]:
    names = [c["name"] for c in run["configs"]]
    width = 24
    lines = [f"scale x{run['factor']}: {sum(run['rows'].values())} rows in dev before the cases ({run['rows']})",
             "seconds (the whole command, wall clock) and whether prod then held exactly what an insert-only sync "
             "should (row count and checksum per table):",
             f"{'case':28}" + "".join(f"{n:>{width}}" for n in names)]
    for case, label in run["cases"]:
        lines.append(f"{label:28}" + "".join(f"{cell(c['results'].get(case)):>{width}}" for c in run["configs"]))
    lines.append("wrong or failed, in detail:")
    for c in run["configs"]:
        for case, result in c["results"].items():
            if not result["right"] or result["exit"]:
                lines.append(f"  {c['name']} / {case}: {result['detail']}"
                             + (f"; error: {result['error']}" if result["error"] else ""))
        if c["failed"]:
            lines.append(f"  {c['name']}: not run past the full sync, which failed")
    lines.append("configurations:")
    for c in run["configs"]:
        lines.append(f"  {c['name']}: {c['describe']}")
        if c["schema_changes"]:
            lines.append(f"    left in prod: {', '.join(c['schema_changes'])}")
    if "diff" in run:
        lines.append("diff (seconds, whether it found the right rows, what it found):")
        for name, r in run["diff"].items():
            lines.append(f"  {name:18} {r['seconds']:7.2f} s  {'right' if r['right'] else 'WRONG'}  {r['found']}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5,
                        help="of the benchmark's data (x1 = 26,040 rows, 461 MB of CSV); x0.5 took 16 min "
                             "on 2 cores shared with a test suite, most of it dlt's full reads (x1: ~25-30 min)")
    parser.add_argument("--skip-diff", action="store_true", help="only the sync cases")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    sling_binary()
    work = Path(tempfile.mkdtemp(prefix="websync-peers-"))
    bench = Bench(work)
    try:
        info = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv),
                "load_start": os.getloadavg(), "versions": versions(bench)}
        print(json.dumps(info), flush=True)
        run = measure(bench, args.scale, args.skip_diff)
        info.update(ended=time.strftime("%Y-%m-%d %H:%M:%S %Z"), load_end=os.getloadavg())
        run.update(info)
        for line in report(run):
            print(line, flush=True)
        print(f"load average at the start {info['load_start']}, at the end {info['load_end']}; {info['versions']}")
        if args.json:
            args.json.write_text(json.dumps(run, indent=1, default=str))
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
