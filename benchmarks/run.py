"""websync against raw COPY and the shell runbook, on the same data, in one run.

    .venv/bin/python benchmarks/run.py [--scale 1.0] [--no-2x] [--repeat 3] [--only-diff]

Measures (a) raw `COPY TO STDOUT | COPY FROM STDIN` between the two servers in FK order, (b) the
runbook done locally with psql (`\\copy` to CSV, temp table, `INSERT ... SELECT ... ON CONFLICT (id)
DO NOTHING`), (c) websync full sync into an empty prod, (d) websync re-run with nothing new, (e) websync
with 1% new rows; (c)-(e) over `direct` and over `ssh_tunnel` through a loopback sshd. websync's time
is the Dagster run as the instance records it (run start to run end); process start-up is reported on
its own line. Prints seconds, rows/s, MB/s, bytes sent to prod, peak RSS and the ratios of the targets.
The diff is measured without a cache and as dev_prod_diff_sensor ticks: a first (cold) tick with an empty
cache, then a tick with nothing changed, with the bytes it made prod read (pg_statio_user_tables blocks of
the four tables, heap, TOAST and indexes) against the tables' total size; ``--only-diff`` measures only that.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psycopg
from dagster import AssetKey, DagsterInstance
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dataset import Scale, generate  # noqa: E402
from websync_dagster.core.settings import load_settings  # noqa: E402
from websync_dagster.core.tables import DEFAULT_TABLES  # noqa: E402
from websync_dagster.demo.postgres import EmbeddedPostgres  # noqa: E402
from websync_dagster.demo.sample_schema import schema_ddl  # noqa: E402
from websync_dagster.demo.sshd import SshServer, start_sshd  # noqa: E402
from websync_dagster.engine.run import SyncContext, run_diff  # noqa: E402

PASSWORD = "bench-pw-3141"


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.dev = EmbeddedPostgres(work / "dev", password=PASSWORD).start()
        self.prod = EmbeddedPostgres(work / "prod", password=PASSWORD).start()
        self.sshd: SshServer = start_sshd(work / "sshd")
        self.counter = 0
        for server, side in ((self.dev, "dev"), (self.prod, "prod")):
            server.create_database("tpl")
            with psycopg.connect(server.url("tpl"), autocommit=True) as conn:
                conn.execute(schema_ddl(side, fts_index=False))
                conn.execute("INSERT INTO legal_taxonomy (code) VALUES ('civ'), ('pen'), ('com')")

    def fresh(self, server: EmbeddedPostgres, prefix: str, template: str = "tpl") -> str:
        self.counter += 1
        name = f"{prefix}_{self.counter}"
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                         sql.Identifier(template)))
        return server.url(name)

    def settle(self, timeout_s: float = 120) -> None:
        """Before each timed measurement, whatever it is: both servers checkpointed and no autovacuum
        worker left from the previous load (after a 0.5-1 GB insert, prod vacuums its TOAST table for
        a while, which would otherwise land on whichever measurement comes next)."""
        deadline = time.monotonic() + timeout_s
        for server in (self.dev, self.prod):
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute("CHECKPOINT")
                while time.monotonic() < deadline and conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'").fetchone()[0]:
                    time.sleep(0.5)

    def shared_columns(self, dev_url: str, prod_url: str, table: str) -> list[str]:
        query = ("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                 "AND NOT attisdropped ORDER BY attnum")
        with psycopg.connect(dev_url) as d, psycopg.connect(prod_url) as p:
            prod_cols = {r[0] for r in p.execute(query, [table])}
            return [r[0] for r in d.execute(query, [table]) if r[0] in prod_cols]


def raw_copy(bench: Bench, dev_url: str, prod_url: str) -> dict:
    """(a) the floor: one COPY pipe per table, dev -> prod, columns by name, no dedup."""
    started, total = time.perf_counter(), 0
    with psycopg.connect(dev_url) as dev, psycopg.connect(prod_url) as prod:
        for table in DEFAULT_TABLES:
            cols = sql.SQL(", ").join(map(sql.Identifier, bench.shared_columns(dev_url, prod_url, table)))
            out = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT csv)").format(cols, sql.Identifier(table))
            into = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(sql.Identifier(table), cols)
            with dev.cursor().copy(out) as src, prod.cursor().copy(into) as dst:
                for chunk in src:
                    dst.write(chunk)
                    total += len(chunk)
        prod.commit()
    return {"seconds": time.perf_counter() - started, "csv_bytes": total}


def runbook(bench: Bench, dev_url: str, prod_url: str) -> dict:
    """(b) the shell runbook done locally with psql: full export, temp table, INSERT ... ON CONFLICT (id)."""
    psql = str(bench.dev.bin_dir / "psql")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for table in DEFAULT_TABLES:
            cols = ", ".join(bench.shared_columns(dev_url, prod_url, table))
            csv = Path(tmp) / f"{table}.csv"
            subprocess.run([psql, dev_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                            f"\\copy (SELECT {cols} FROM {table}) TO '{csv}' CSV HEADER"], check=True)
            # the runbook's own statements, measured as they are (ON CONFLICT (id) only, as it did)
            script = (f"BEGIN;\nCREATE TEMP TABLE tmp_{table} AS SELECT {cols} FROM {table} WITH NO DATA;\n"
                      f"\\copy tmp_{table} FROM '{csv}' CSV HEADER\n"
                      f"INSERT INTO {table} ({cols}) SELECT {cols} FROM tmp_{table} ON CONFLICT (id) DO NOTHING;\n"
                      f"COMMIT;\n")
            subprocess.run([psql, prod_url, "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=script.encode(), check=True)
    return {"seconds": time.perf_counter() - started}


def websync(bench: Bench, dev_url: str, prod_url: str, home: Path, *, ssh: bool) -> dict:
    """(c)-(e): `websync sync` in its own process; the run's duration as the Dagster instance records it."""
    env = {**os.environ, "WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url, "DAGSTER_HOME": str(home),
           "WEBSYNC_EXPORT_DIR": str(home / "exports")}
    for key in [k for k in env if k.startswith("VPS_") or k == "WEBSYNC_PROD_PSQL"]:
        env.pop(key)
    if ssh:
        s = bench.sshd
        env.update(VPS_HOST=s.host, VPS_PORT=str(s.port), VPS_USER=s.user, VPS_KEY_FILE=str(s.key_file),
                   VPS_KNOWN_HOSTS=str(s.known_hosts))
    wall = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "websync_run.py"), "sync"], env=env,
                          capture_output=True, text=True, cwd=REPO)
    wall = time.time() - wall
    if proc.returncode != 0:
        raise RuntimeError(f"websync failed: {proc.stderr[-3000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    instance = DagsterInstance.from_config(str(home))
    record = instance.get_run_records(limit=1)[0]
    run_id = record.dagster_run.run_id
    steps = instance.get_run_step_stats(run_id)
    shipped = sent = rows = engine = 0.0
    for table in DEFAULT_TABLES:
        event = instance.get_latest_materialization_event(AssetKey([table, "prod_upserted"]))
        meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        export = instance.get_latest_materialization_event(AssetKey([table, "export"]))
        export_meta = {k: v.value for k, v in export.asset_materialization.metadata.items()}
        shipped += meta["bytes"]
        rows += meta["inserted"]
        sent += meta.get("wire_bytes_sent", meta["bytes"])
        engine += max(meta["seconds"], export_meta["seconds"])  # the load follows the export: they overlap
    run_s = record.end_time - record.start_time
    return {
        "seconds": run_s,
        "startup_s": record.start_time - info["process_start"],
        "wall_s": wall,
        "peak_rss_mb": info["peak_rss_mb"],
        "rows_inserted": rows,
        "csv_bytes_shipped": shipped,
        "bytes_sent_to_prod": sent,
        "steps": len(steps),
        "engine_s": engine,
        "dagster_overhead_s": run_s - engine,
    }


def diff_cost(bench: Bench, dev_url: str, prod_url: str, *, ssh: bool) -> dict:
    """The dev-vs-prod diff (checksum bisection) right after a sync: nothing differs."""
    env = {"WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url}
    if ssh:
        s = bench.sshd
        env.update(VPS_HOST=s.host, VPS_PORT=str(s.port), VPS_USER=s.user, VPS_KEY_FILE=str(s.key_file),
                   VPS_KNOWN_HOSTS=str(s.known_hosts))
    with SyncContext(load_settings(env, env_file=None)) as ctx:
        ctx.plans()
        wire_before = ctx.transport.wire_bytes_sent() or 0
        started = time.perf_counter()
        diffs = run_diff(ctx)
        seconds = time.perf_counter() - started
        wire = (ctx.transport.wire_bytes_sent() or 0) - wire_before
    return {"seconds": seconds, "in_sync": all(d.in_sync for d in diffs), "queries_per_side": sum(d.queries for d in diffs),
            "ids_compared": sum(d.ids_compared for d in diffs), "wire_bytes": wire}


def _prod_blocks_read(prod_url: str) -> int:
    """Blocks of the four tables (heap, TOAST, their indexes) prod has read or found in its cache so far, once
    every other session of the database has ended (a backend hands its counters over when it exits)."""
    with psycopg.connect(prod_url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()").fetchone()[0]:
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(
            "SELECT sum(coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) + coalesce(toast_blks_read, 0) "
            "+ coalesce(toast_blks_hit, 0) + coalesce(idx_blks_read, 0) + coalesce(idx_blks_hit, 0) "
            "+ coalesce(tidx_blks_read, 0) + coalesce(tidx_blks_hit, 0))::bigint FROM pg_statio_user_tables "
            "WHERE relname = ANY(%s)", [list(DEFAULT_TABLES)]).fetchone()[0]


def diff_tick(bench: Bench, dev_url: str, prod_url: str, cache_dir: Path, *, ssh: bool) -> dict:
    """One tick of dev_prod_diff_sensor's diff with its cache (connections and plans set up before the clock
    starts, as in ``diff_cost``), and the bytes it made prod read, against the four tables' total size."""
    env = {"WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url}
    if ssh:
        s = bench.sshd
        env.update(VPS_HOST=s.host, VPS_PORT=str(s.port), VPS_USER=s.user, VPS_KEY_FILE=str(s.key_file),
                   VPS_KNOWN_HOSTS=str(s.known_hosts))
    with psycopg.connect(prod_url) as conn:
        block, total = conn.execute(
            "SELECT current_setting('block_size')::int, sum(pg_total_relation_size(c.oid))::bigint "
            "FROM pg_class AS c WHERE c.oid = ANY(%s::regclass[])", [list(DEFAULT_TABLES)]).fetchone()
    before = _prod_blocks_read(prod_url)
    with SyncContext(load_settings(env, env_file=None)) as ctx:
        ctx.plans()
        started = time.perf_counter()
        diffs = run_diff(ctx, cache_dir=cache_dir)
        seconds = time.perf_counter() - started
    read = (_prod_blocks_read(prod_url) - before) * block
    return {"seconds": seconds, "in_sync": all(d.in_sync for d in diffs), "prod_bytes_read": read,
            "table_bytes": total, "read_share": read / total, "queries_per_side": sum(d.queries for d in diffs),
            "rehashed_buckets": sum(d.rehashed_buckets for d in diffs)}


def diff_ticks(bench: Bench, dev_url: str, prod_url: str, timed: Callable[[str, Callable[[], dict]], None],
               label: str) -> None:
    """A first tick with an empty cache (every row hashed, the cache written), then a tick with nothing changed."""
    cache_dir = Path(tempfile.mkdtemp(prefix="diff-cache-", dir=bench.work))
    ssh = label == "ssh_tunnel"
    timed(f"diff_tick_cold_{label}", partial(diff_tick, bench, dev_url, prod_url, cache_dir, ssh=ssh))
    timed(f"diff_tick_warm_{label}", partial(diff_tick, bench, dev_url, prod_url, cache_dir, ssh=ssh))


def measure_diff_only(bench: Bench, factor: float, repeat: int) -> dict:
    """``--only-diff``: dev at the scale, prod a raw COPY of it (in sync as far as the diff goes), then the
    diff without a cache and the cold and warm ticks with one, over direct and ssh_tunnel."""
    dev_url = bench.fresh(bench.dev, f"dev{str(factor).replace('.', '_')}")
    with psycopg.connect(dev_url) as dev:
        rows = generate(dev, Scale().times(factor))
    prod_url = bench.fresh(bench.prod, "diffonly")
    copied = raw_copy(bench, dev_url, prod_url)
    with psycopg.connect(prod_url, autocommit=True) as prod:
        prod.execute("VACUUM ANALYZE")
    results: dict[str, list[dict]] = {"raw_copy": [copied]}

    def timed(name: str, measure: Callable[[], dict]) -> None:
        bench.settle()
        results.setdefault(name, []).append(measure())

    for _ in range(repeat):
        for label in ("direct", "ssh_tunnel"):
            timed(f"diff_in_sync_{label}", partial(diff_cost, bench, dev_url, prod_url, ssh=label == "ssh_tunnel"))
            diff_ticks(bench, dev_url, prod_url, timed, label)
    return {"factor": factor, "rows": rows, "results": results}


def diff_report(scale: dict) -> list[str]:
    r = scale["results"]
    lines = [f"diff at x{scale['factor']}: {sum(scale['rows'].values())} rows, "
             f"{median(r['raw_copy'], 'csv_bytes') / 1e6:.0f} MB of CSV"]
    for label in ("direct", "ssh_tunnel"):
        if f"diff_tick_warm_{label}" not in r:
            continue
        cold, warm = r[f"diff_tick_cold_{label}"], r[f"diff_tick_warm_{label}"]
        lines.append(
            f"  {label:10} no cache {median(r[f'diff_in_sync_{label}'], 'seconds'):5.2f} s | cold tick "
            f"{median(cold, 'seconds'):5.2f} s, prod read {median(cold, 'prod_bytes_read') / 1e6:6.1f} MB | warm tick "
            f"{median(warm, 'seconds'):5.2f} s (<= 1), prod read {median(warm, 'prod_bytes_read') / 1e6:5.2f} MB = "
            f"{100 * median(warm, 'read_share'):4.1f}% of {warm[0]['table_bytes'] / 1e6:.0f} MB (<= 5%), "
            f"{warm[0]['queries_per_side']} queries per side, {warm[0]['rehashed_buckets']} buckets re-hashed, "
            f"in sync: {all(v['in_sync'] for v in warm)}, n={len(warm)}")
    return lines


def measure_scale(bench: Bench, factor: float, repeat: int) -> dict:
    dev_url = bench.fresh(bench.dev, f"dev{str(factor).replace('.', '_')}")
    with psycopg.connect(dev_url) as dev:
        rows = generate(dev, Scale().times(factor))
    results: dict[str, list[dict]] = {}

    def timed(name: str, measure: Callable[[], dict]) -> None:
        bench.settle()
        results.setdefault(name, []).append(measure())

    synced: dict[str, str] = {}
    for _ in range(repeat):
        timed("raw_copy", partial(raw_copy, bench, dev_url, bench.fresh(bench.prod, "raw")))
        prod_url = bench.fresh(bench.prod, "runbook")
        timed("runbook_full", partial(runbook, bench, dev_url, prod_url))
        timed("runbook_rerun", partial(runbook, bench, dev_url, prod_url))
        for ssh in (False, True):
            label = "ssh_tunnel" if ssh else "direct"
            prod_url = bench.fresh(bench.prod, label)
            synced[label] = prod_url.rsplit("/", 1)[1]
            home = bench.work / f"home_{label}_{bench.counter}"
            home.mkdir()
            timed(f"websync_full_{label}", partial(websync, bench, dev_url, prod_url, home, ssh=ssh))
            timed(f"websync_rerun_{label}", partial(websync, bench, dev_url, prod_url, home, ssh=ssh))
            timed(f"diff_in_sync_{label}", partial(diff_cost, bench, dev_url, prod_url, ssh=ssh))
            diff_ticks(bench, dev_url, prod_url, timed, label)
    # 1% new rows in dev; each repetition syncs them into a copy of a synced prod (of the last repetition)
    with psycopg.connect(dev_url) as dev:
        generate(dev, Scale().times(factor * 0.01), first=10_000_000)
    for _ in range(repeat):
        for ssh in (False, True):
            label = "ssh_tunnel" if ssh else "direct"
            prod_url = bench.fresh(bench.prod, f"{label}_1pct", template=synced[label])
            home = bench.work / f"home_{label}_1pct_{bench.counter}"
            home.mkdir()
            timed(f"websync_1pct_{label}", partial(websync, bench, dev_url, prod_url, home, ssh=ssh))
    return {"factor": factor, "rows": rows, "results": results}


def median(values: list[dict], key: str) -> float:
    return statistics.median(v[key] for v in values)


def report(scale: dict) -> list[str]:
    r = scale["results"]
    csv = median(r["raw_copy"], "csv_bytes")
    rows = sum(scale["rows"].values())
    lines = [f"scale x{scale['factor']}: {rows} rows, {csv / 1e6:.0f} MB of CSV (shipped columns)",
             f"{'measurement':32} {'s':>8} {'rows/s':>9} {'MB/s':>7} {'sent MB':>9} {'RSS MB':>7} {'start s':>8} n"]
    for name, values in r.items():
        s = median(values, "seconds")
        sent = median(values, "bytes_sent_to_prod") / 1e6 if "bytes_sent_to_prod" in values[0] else float("nan")
        rss = median(values, "peak_rss_mb") if "peak_rss_mb" in values[0] else float("nan")
        start = median(values, "startup_s") if "startup_s" in values[0] else float("nan")
        inserted = median(values, "rows_inserted") if "rows_inserted" in values[0] else rows
        lines.append(f"{name:32} {s:8.2f} {inserted / s:9.0f} {csv / 1e6 / s:7.1f} {sent:9.2f} {rss:7.1f} "
                     f"{start:8.2f} {len(values)}")
    full_d, raw = median(r["websync_full_direct"], "seconds"), median(r["raw_copy"], "seconds")
    lines += [
        "targets (medians):",
        f"  full sync / raw COPY (direct)        {full_d / raw:5.2f}  (<= 1.3; runbook {median(r['runbook_full'], 'seconds') / raw:.2f})",
        f"  re-run bytes sent / CSV (direct)     {median(r['websync_rerun_direct'], 'bytes_sent_to_prod') / csv:7.4f}"
        f"  ssh_tunnel {median(r['websync_rerun_ssh_tunnel'], 'bytes_sent_to_prod') / csv:7.4f}  (<= 0.01)",
        f"  re-run time / runbook re-run         {median(r['websync_rerun_direct'], 'seconds') / median(r['runbook_rerun'], 'seconds'):5.2f}  (<= 0.10)",
        f"  1% new time / full sync (direct)     {median(r['websync_1pct_direct'], 'seconds') / full_d:5.2f}  (<= 0.10)",
        f"  full sync ssh_tunnel / direct        {median(r['websync_full_ssh_tunnel'], 'seconds') / full_d:5.2f}  (<= 1.2)",
        f"  wire bytes / CSV over ssh_tunnel     {median(r['websync_full_ssh_tunnel'], 'bytes_sent_to_prod') / csv:5.2f}  (<= 0.5)",
        f"  peak RSS of the sync process (MB)    {max(median(v, 'peak_rss_mb') for k, v in r.items() if k.startswith('websync')):5.0f}  (<= 300)",
        f"  diff with nothing different (direct) {median(r['diff_in_sync_direct'], 'seconds'):5.2f} s, in sync: "
        f"{all(v['in_sync'] for v in r['diff_in_sync_direct'])}, {r['diff_in_sync_direct'][0]['queries_per_side']} queries per side, "
        f"{r['diff_in_sync_direct'][0]['ids_compared']} ids compared; over ssh_tunnel {median(r['diff_in_sync_ssh_tunnel'], 'seconds'):5.2f} s, "
        f"{median(r['diff_in_sync_ssh_tunnel'], 'wire_bytes') / 1e3:.0f} kB sent on the wire",
        f"  Dagster: process start -> run start  {median(r['websync_full_direct'], 'startup_s'):5.2f} s; in the run, "
        f"{r['websync_full_direct'][0]['steps']} steps, and the run's duration minus the engine's own time "
        f"(export/load seconds in the metadata): full {median(r['websync_full_direct'], 'dagster_overhead_s'):5.2f} s, "
        f"re-run {median(r['websync_rerun_direct'], 'dagster_overhead_s'):5.2f} s, "
        f"1% {median(r['websync_1pct_direct'], 'dagster_overhead_s'):5.2f} s",
    ]
    return lines + diff_report(scale)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-2x", dest="twice", action="store_false")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--only-diff", action="store_true",
                        help="only the diff: without a cache, and a cold then a warm tick with one (prod a raw COPY)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="websync-bench-"))
    bench = Bench(work)
    try:
        if args.only_diff:
            scales = [measure_diff_only(bench, args.scale, args.repeat)]
            if args.twice:
                scales.append(measure_diff_only(bench, args.scale * 2, args.repeat))
            for scale in scales:
                for line in diff_report(scale):
                    print(line, flush=True)
            if args.json:
                args.json.write_text(json.dumps(scales, indent=1, default=str))
            return 0
        scales = [measure_scale(bench, args.scale, args.repeat)]
        for line in report(scales[0]):
            print(line, flush=True)
        if args.twice:
            scales.append(measure_scale(bench, args.scale * 2, 1))
            for line in report(scales[1]):
                print(line, flush=True)
            one, two = scales
            print("growth from x1 to x2 (ratio of medians):")
            for name in ("raw_copy", "websync_full_direct", "websync_full_ssh_tunnel"):
                print(f"  {name:28} time x{median(two['results'][name], 'seconds') / median(one['results'][name], 'seconds'):.2f}"
                      + (f", peak RSS x{median(two['results'][name], 'peak_rss_mb') / median(one['results'][name], 'peak_rss_mb'):.2f}"
                         if name != "raw_copy" else ""))
        if args.json:
            args.json.write_text(json.dumps(scales, indent=1, default=str))
    finally:
        bench.sshd.stop()
        bench.dev.stop()
        bench.prod.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
