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

Times are the whole command, from the shell to its exit (wall clock). Then ``websync diff`` against ``reladiff``
(one ``reladiff`` per table, times summed) with prod equal to dev, 1% of rows missing in prod, 1% changed in prod.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dataset import generate_scaled  # noqa: E402
from benchmarks.peers_cases import cases  # noqa: E402
from benchmarks.peers_check import TABLES, expected_after, prod_figures, schema_changes, verdict  # noqa: E402
from benchmarks.peers_tools import (  # noqa: E402
    PEERS_VENV,
    dlt_config,
    last_line,
    sling_binary,
    sling_config,
    versions,
    websync_config,
)
from benchmarks.run import WEBSYNC, Bench, raw_copy, websync_env  # noqa: E402

# --- the diff ----------------------------------------------------------------------------------------------------

def diff_section(bench: Bench, dev_url: str, columns: dict[str, list[str]]) -> dict:
    """prod = a raw COPY of dev (equal); then copies of it with ~1% of the rows of knowledge_base, web_pages and
    web_files deleted (rows nothing references) or changed (title / filename); ``websync diff`` and ``reladiff``."""
    equal_url = bench.fresh(bench.prod, "diff_equal")
    raw_copy(bench, dev_url, equal_url)
    with psycopg.connect(equal_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    refs = {"knowledge_base": "NOT EXISTS (SELECT 1 FROM web_pages AS p WHERE p.knowledge_base_id = t.id) AND "
                              "NOT EXISTS (SELECT 1 FROM web_files AS f WHERE f.knowledge_base_id = t.id)",
            "web_pages": "NOT EXISTS (SELECT 1 FROM web_files AS f WHERE f.web_page_id = t.id)", "web_files": "true"}
    edits = {"knowledge_base": "title", "web_pages": "title", "web_files": "filename"}
    setups: dict[str, dict] = {"equal": {"url": equal_url, "missing": {}, "changed": {}}}
    name = equal_url.rsplit("/", 1)[1]
    for kind in ("missing", "changed"):
        url = bench.fresh(bench.prod, f"diff_{kind}", template=name)
        picked = {}
        with psycopg.connect(url) as conn:
            for table, cond in refs.items():
                total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
                pick = sql.SQL("SELECT id FROM {} AS t WHERE {} ORDER BY md5(id::text) LIMIT %s").format(
                    sql.Identifier(table), sql.SQL(cond if kind == "missing" else "true"))
                ids = [r[0] for r in conn.execute(pick, [max(1, total // 100)])]
                if kind == "missing":
                    conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table)), [ids])
                else:
                    conn.execute(sql.SQL("UPDATE {} SET {} = {} || ' (edited in prod)' WHERE id = ANY(%s)").format(
                        sql.Identifier(table), sql.Identifier(edits[table]), sql.Identifier(edits[table])), [ids])
                picked[table] = {str(i) for i in ids}
        setups[kind] = {"url": url, "missing": picked if kind == "missing" else {},
                        "changed": picked if kind == "changed" else {}}
    results = {}
    for kind, setup in setups.items():
        bench.settle()
        results[f"websync_{kind}"] = websync_diff(bench, dev_url, setup)
        bench.settle()
        results[f"reladiff_{kind}"] = reladiff(dev_url, setup, columns)
    return results


def websync_diff(bench: Bench, dev_url: str, setup: dict) -> dict:
    home = Path(tempfile.mkdtemp(prefix="home_diff_", dir=bench.work))
    env = websync_env(dev_url, setup["url"], home, None)
    started = time.perf_counter()
    proc = subprocess.run([str(WEBSYNC), "diff", "--json", "--env-file", "/dev/null"], env=env, cwd=home,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return {"seconds": seconds, "right": False, "found": last_line(proc.stderr)}
    rows = {r["table"]: r for r in json.loads(proc.stdout)}
    found, right = [], True
    for table in TABLES:
        row = rows.get(table, {})
        got = (row.get("missing_in_prod"), row.get("only_in_prod"), row.get("changed"))
        want = (len(setup["missing"].get(table, ())), 0, len(setup["changed"].get(table, ())))
        right &= got == want
        if any(got):
            found.append(f"{table} {got[0]} missing / {got[1]} only in prod / {got[2]} changed")
    return {"seconds": seconds, "right": right, "found": "; ".join(found) or "in sync (counts per table)"}


REL_ROW = re.compile(r'^\["([+-])", \["([0-9a-f-]{36})"', re.M)


def reladiff(dev_url: str, setup: dict, columns: dict[str, list[str]]) -> dict:
    """One ``reladiff`` per table (key ``id``, every shipped column compared), the ids it prints read back."""
    seconds, found, right, errors = 0.0, [], True, []
    for table in TABLES:
        argv = [str(PEERS_VENV / "bin" / "reladiff"), dev_url, table, setup["url"], table, "-k", "id", "--json"]
        for col in columns[table]:
            if col != "id":
                argv += ["-c", col]
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        seconds += time.perf_counter() - started
        if proc.returncode != 0:
            right = False
            errors.append(f"{table}: {last_line(proc.stderr)}")
            continue
        signs: dict[str, set] = {}
        for sign, key in REL_ROW.findall(proc.stdout):
            signs.setdefault(key, set()).add(sign)
        missing = {k for k, s in signs.items() if s == {"-"}}
        only_prod = {k for k, s in signs.items() if s == {"+"}}
        changed = {k for k, s in signs.items() if s == {"-", "+"}}
        right &= (missing == setup["missing"].get(table, set()) and not only_prod
                  and changed == setup["changed"].get(table, set()))
        if signs:
            found.append(f"{table} {len(missing)} missing / {len(only_prod)} only in prod / {len(changed)} changed")
    return {"seconds": seconds, "right": right,
            "found": "; ".join(errors + found) or "in sync (ids per table)"}


# --- the run -----------------------------------------------------------------------------------------------------

def measure(bench: Bench, factor: float, skip_diff: bool) -> dict:
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
