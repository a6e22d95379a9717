"""``websync diff`` against ``reladiff`` (``benchmarks/peers.py``'s last part), on the data of the sync cases.

Three prods: a raw COPY of dev (equal), then copies of it with ~1% of the rows of knowledge_base, web_pages and
web_files missing (rows nothing references, deleted) or changed (title / filename). Each tool is right when it
finds exactly those rows: websync by its counts per table (``websync diff --json``), reladiff by the ids it prints
(one ``reladiff`` per table, key ``id``, every shipped column compared, times summed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.peers_check import TABLES
from benchmarks.peers_tools import PEERS_VENV, last_line
from benchmarks.run import WEBSYNC, Bench, raw_copy, websync_env


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
