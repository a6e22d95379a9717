"""websync against raw COPY and the shell runbook, on the same data, in one run.

    .venv/bin/python benchmarks/run.py [--scale 1.0] [--repeat 3] [--growth 2 [10] | --no-2x] [--link-scale 0.25]
                                       [--no-link] [--cut] [--only-link] [--only-diff]

Measures (a) raw `COPY TO STDOUT | COPY FROM STDIN` between the two servers in FK order, (b) the
runbook done locally with psql (`\\copy` to CSV, temp table, `INSERT ... SELECT ... ON CONFLICT (id)
DO NOTHING`), (c) websync full sync into an empty prod, (d) websync re-run with nothing new, (e) websync
with 1% new rows; (c)-(e) over `direct` and over `ssh_tunnel` through a loopback sshd. websync's time
is the Dagster run as the instance records it (run start to run end); process start-up is reported on
its own line. Prints seconds, rows/s, MB/s, bytes sent to prod, peak RSS and the ratios of the targets.
The diff is measured without a cache and as dev_prod_diff_sensor ticks: a first (cold) tick with an empty
cache, then a tick with nothing changed, with the bytes it made prod read (pg_statio_user_tables blocks of
the four tables, heap, TOAST and indexes) against the tables' total size; ``--only-diff`` measures only that.

Also, at the first scale: the whole `websync sync` process of a no-op re-run (the console script, exec to
exit) and where its time goes (``benchmarks/noop_profile.py``, ``python -X importtime``); the VPS link
section (``benchmarks/vps_link.py``: runbook, ssh_tunnel and ssh_psql through a 20 Mbit/s, 40 ms link, at
``--link-scale`` of the data; ``--cut`` adds a run reset at ~80% of web_pages); ``websync --version`` (exec to
exit); and ``--growth F [F ...]`` measures the scale times each F once (x10 = 4.6 GB of CSV) and prints the growth
of each figure. Each measurement prints a progress line on stderr as it ends; ``--json`` is rewritten after each
scale, so a long run's figures so far survive it.
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

from benchmarks.dataset import Scale, generate, generate_scaled  # noqa: E402
from benchmarks.vps_link import link_report, measure_link  # noqa: E402
from websync_dagster.core.settings import Settings, load_settings  # noqa: E402
from websync_dagster.core.tables import DECLARED_DEPS, DEFAULT_TABLES  # noqa: E402
from websync_dagster.demo.postgres import EmbeddedPostgres  # noqa: E402
from websync_dagster.demo.sample_schema import schema_ddl  # noqa: E402
from websync_dagster.demo.sshd import SshServer, start_sshd  # noqa: E402
from websync_dagster.engine.context import SyncContext  # noqa: E402
from websync_dagster.engine.run import run_diff, run_tables  # noqa: E402
from websync_dagster.engine.table_run import TableRun  # noqa: E402

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

    def close(self) -> None:
        """Stop the servers and the sshd, and remove the bench's work folder."""
        self.sshd.stop()
        self.dev.stop()
        self.prod.stop()
        shutil.rmtree(self.work, ignore_errors=True)

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

    def drop(self, url: str) -> None:
        """Drop a database the rest of the run no longer needs (disk: x10 is ~5 GB per copy)."""
        with psycopg.connect(self.prod.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(url.rsplit("/", 1)[1])))

    def shared_columns(self, dev_url: str, prod_url: str, table: str) -> list[str]:
        query = ("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                 "AND NOT attisdropped ORDER BY attnum")
        with psycopg.connect(dev_url) as d, psycopg.connect(prod_url) as p:
            prod_cols = {r[0] for r in p.execute(query, [table])}
            return [r[0] for r in d.execute(query, [table]) if r[0] in prod_cols]


def engine_sync(bench: Bench, settings: Settings) -> tuple[float, list[TableRun]]:
    """The engine's whole sync (``run_tables`` as websync_job runs it, without Dagster), timed after
    ``bench.settle()``: its seconds and each table's run; a table's error is raised."""
    bench.settle()
    started = time.perf_counter()
    with SyncContext(settings) as ctx:
        runs = list(run_tables(ctx, export=settings.tables, load=settings.tables, declared_deps=DECLARED_DEPS))
    seconds = time.perf_counter() - started
    if any(r.error is not None for r in runs):
        raise RuntimeError([str(r.error) for r in runs if r.error is not None])
    return seconds, runs


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


def ssh_env(bench: Bench) -> dict[str, str]:
    """Settings that reach prod through the loopback sshd (VPS_* of `websync`), with the compression level a
    LAN calls for (README: 1, where CPU counts more than bytes; the link section keeps the default, 6)."""
    s = bench.sshd
    return {"VPS_HOST": s.host, "VPS_PORT": str(s.port), "VPS_USER": s.user, "VPS_KEY_FILE": str(s.key_file),
            "VPS_KNOWN_HOSTS": str(s.known_hosts), "WEBSYNC_SSH_COMPRESSION_LEVEL": "1"}


def websync_env(dev_url: str, prod_url: str, home: Path, via: dict[str, str] | None) -> dict[str, str]:
    """The process environment of a `websync` run: prod directly, or ``via`` (VPS_* and WEBSYNC_PROD_*)."""
    env = {**os.environ, "WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url, "DAGSTER_HOME": str(home),
           "WEBSYNC_EXPORT_DIR": str(home / "exports")}
    for key in [k for k in env if k.startswith("VPS_") or k == "WEBSYNC_PROD_PSQL"]:
        env.pop(key)
    env.update(via or {})
    return env


def failure_detail(home: Path) -> str:
    """The error of the last run's failed step, as the Dagster instance recorded it (its cause chain)."""
    instance = DagsterInstance.from_config(str(home))
    records = instance.get_run_records(limit=1)
    if not records:
        return "no run recorded"
    for entry in instance.all_logs(records[0].dagster_run.run_id):
        event = entry.dagster_event
        if event is not None and event.is_step_failure and event.step_failure_data.error is not None:
            return event.step_failure_data.error.to_string()[-4000:]
    return "no step failure recorded"


def websync(bench: Bench, dev_url: str, prod_url: str, home: Path, *, ssh: bool = False,
            via: dict[str, str] | None = None, check: bool = True) -> dict:
    """(c)-(e): `websync sync` in its own process; the run's duration as the Dagster instance records it,
    and the process's wall time from exec to exit. ``check=False`` returns a failed run's exit code and
    the last line it wrote on stderr instead of raising."""
    env = websync_env(dev_url, prod_url, home, ssh_env(bench) if ssh else via)
    wall = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "websync_run.py"), "sync"], env=env,
                          capture_output=True, text=True, cwd=home)
    wall = time.perf_counter() - wall
    if proc.returncode != 0:
        if check:
            raise RuntimeError(f"websync failed: {proc.stderr[-3000:]}\n{failure_detail(home)}")
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        return {"wall_s": wall, "exit": proc.returncode, "error": errors[-1] if errors else "",
                "detail": failure_detail(home)}
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    instance = DagsterInstance.from_config(str(home))
    record = instance.get_run_records(limit=1)[0]
    run_id = record.dagster_run.run_id
    steps = instance.get_run_step_stats(run_id)
    shipped = sent = rows = engine = 0.0
    wire_by_table = {}
    for table in DEFAULT_TABLES:
        event = instance.get_latest_materialization_event(AssetKey([table, "prod_upserted"]))
        meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        export = instance.get_latest_materialization_event(AssetKey([table, "export"]))
        export_meta = {k: v.value for k, v in export.asset_materialization.metadata.items()}
        shipped += meta["bytes"]
        rows += meta["inserted"]
        wire_by_table[table] = meta.get("wire_bytes_sent", meta["bytes"])
        sent += wire_by_table[table]
        engine += max(meta["seconds"], export_meta["seconds"])  # the load follows the export: they overlap
    run_s = record.end_time - record.start_time
    return {
        "seconds": run_s,
        "startup_s": record.start_time - info["process_start"],
        "wall_s": wall,
        "exit": 0,
        "peak_rss_mb": info["peak_rss_mb"],
        "rows_inserted": rows,
        "csv_bytes_shipped": shipped,
        "bytes_sent_to_prod": sent,
        "wire_by_table": wire_by_table,
        "steps": len(steps),
        "engine_s": engine,
        "dagster_overhead_s": run_s - engine,
    }


WEBSYNC = Path(sys.executable).parent / "websync"


def noop_process(dev_url: str, prod_url: str, home: Path, via: dict[str, str] | None) -> dict:
    """The whole `websync sync` process (the console script, exec to exit) with nothing to ship."""
    env = websync_env(dev_url, prod_url, home, via)
    started = time.perf_counter()
    proc = subprocess.run([str(WEBSYNC), "sync", "--quiet", "--env-file", "/dev/null"], env=env, cwd=home,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"websync failed: {proc.stderr[-3000:]}")
    return {"seconds": wall, "wall_s": wall}


def version_process() -> dict:
    """`websync --version`, exec to exit."""
    started = time.perf_counter()
    subprocess.run([str(WEBSYNC), "--version"], check=True, capture_output=True)
    wall = time.perf_counter() - started
    return {"seconds": wall, "wall_s": wall}


def profile_noop(dev_url: str, prod_url: str, home: Path) -> dict:
    """Stages of a no-op process (cProfile, so slower than unprofiled) and the heaviest imports."""
    env = websync_env(dev_url, prod_url, home, None)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "noop_profile.py"), str(home / "noop.prof")],
                          env=env, cwd=home, capture_output=True, text=True)
    ended, wall = time.time(), time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"profile failed: {proc.stderr[-3000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    stages = {**info["stages"], "exit (teardown, as the parent sees it)": ended - info["main_end"]}
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import websync_dagster.cli.runner"],
                             env=env, cwd=home, capture_output=True, text=True).stderr
    return {"wall_s": wall, "stages": stages, "imports": import_totals(imports)}


def import_totals(importtime: str, top: int = 10) -> dict[str, float]:
    """Seconds of ``-X importtime`` self time per top-level package, the heaviest first."""
    totals: dict[str, float] = {}
    for line in importtime.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].strip().split()[-1].isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        totals[package] = totals.get(package, 0.0) + int(parts[0].split()[-1]) / 1e6
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:top])


def diff_cost(bench: Bench, dev_url: str, prod_url: str, *, ssh: bool) -> dict:
    """The dev-vs-prod diff (checksum bisection) right after a sync: nothing differs."""
    env = {"WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url, **(ssh_env(bench) if ssh else {})}
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
    env = {"WEBSYNC_DEV_URL": dev_url, "WEBSYNC_PROD_URL": prod_url, **(ssh_env(bench) if ssh else {})}
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


def measure_scale(bench: Bench, factor: float, repeat: int, *, profile: bool = False) -> dict:
    dev_url = bench.fresh(bench.dev, f"dev{str(factor).replace('.', '_')}")
    with psycopg.connect(dev_url) as dev:
        rows = generate_scaled(dev, factor)
    results: dict[str, list[dict]] = {}

    def timed(name: str, measure: Callable[[], dict]) -> None:
        bench.settle()
        results.setdefault(name, []).append(measure())
        print(f"{time.strftime('%H:%M:%S')} x{factor} {name}: {results[name][-1].get('seconds', float('nan')):.2f} s",
              file=sys.stderr, flush=True)

    synced: dict[str, str] = {}
    for _ in range(repeat):
        prod_url = bench.fresh(bench.prod, "raw")
        timed("raw_copy", partial(raw_copy, bench, dev_url, prod_url))
        bench.drop(prod_url)
        prod_url = bench.fresh(bench.prod, "runbook")
        timed("runbook_full", partial(runbook, bench, dev_url, prod_url))
        timed("runbook_rerun", partial(runbook, bench, dev_url, prod_url))
        bench.drop(prod_url)
        for ssh in (False, True):
            label = "ssh_tunnel" if ssh else "direct"
            prod_url = bench.fresh(bench.prod, label)
            synced[label] = prod_url.rsplit("/", 1)[1]
            home = bench.work / f"home_{label}_{bench.counter}"
            home.mkdir()
            timed(f"websync_full_{label}", partial(websync, bench, dev_url, prod_url, home, ssh=ssh))
            timed(f"websync_rerun_{label}", partial(websync, bench, dev_url, prod_url, home, ssh=ssh))
            timed(f"noop_process_{label}", partial(noop_process, dev_url, prod_url, home, ssh_env(bench) if ssh else None))
            if profile and not ssh and "noop_profile" not in results:
                bench.settle()
                results["noop_profile"] = [profile_noop(dev_url, prod_url, home)]
            if profile and not ssh:
                timed("version_process", version_process)
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
            bench.drop(prod_url)
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
        if "seconds" not in values[0] or name == "version_process":
            continue
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
        f"  full `websync sync` from the shell (exec to exit) / raw COPY (direct)  "
        f"{median(r['websync_full_direct'], 'wall_s') / raw:5.2f}  (<= 1.15); each: "
        + ", ".join(f"{v['wall_s']:.2f}" for v in r["websync_full_direct"]) + " s",
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
    return lines + noop_report(scale) + diff_report(scale)


def noop_report(scale: dict) -> list[str]:
    r = scale["results"]
    rerun = median(r["runbook_rerun"], "seconds")
    lines = ["no-op as the user waits for it (`websync sync --quiet`, exec to exit; runbook re-run "
             f"{rerun:.2f} s in this run):"]
    for label in ("direct", "ssh_tunnel"):
        values = r[f"noop_process_{label}"]
        lines.append(f"  {label:10} {median(values, 'seconds'):5.2f} s (<= 1.5) = {100 * median(values, 'seconds') / rerun:4.1f}% "
                     "of the runbook's re-run (<= 30%); each: " + ", ".join(f"{v['seconds']:.2f}" for v in values))
    if "version_process" in r:
        lines.append(f"  `websync --version`: {median(r['version_process'], 'seconds'):.2f} s (<= 0.2); each: "
                     + ", ".join(f"{v['seconds']:.2f}" for v in r["version_process"]))
    if "noop_profile" in r:
        prof = r["noop_profile"][0]
        lines.append(f"  profiled no-op (cProfile, direct), {prof['wall_s']:.2f} s in all:")
        lines += [f"    {stage:42} {s:6.2f} s" for stage, s in prof["stages"].items()]
        lines.append("  heaviest imports (python -X importtime, self time summed per top-level package): "
                     + ", ".join(f"{k} {v:.2f} s" for k, v in prof["imports"].items()))
    return lines


GROWTH = ("raw_copy", "runbook_full", "websync_full_direct", "websync_full_ssh_tunnel", "websync_rerun_direct",
          "websync_1pct_direct", "noop_process_direct", "diff_in_sync_direct", "diff_tick_cold_direct",
          "diff_tick_warm_direct")


def growth_report(one: dict, big: dict) -> list[str]:
    lines = [f"growth from x{one['factor']} to x{big['factor']} (ratio of medians; one repetition at x{big['factor']}):"]
    for name in GROWTH:
        a, b = one["results"].get(name), big["results"].get(name)
        if not a or not b:
            continue
        line = f"  {name:26} {median(a, 'seconds'):7.2f} s -> {median(b, 'seconds'):7.2f} s  x{median(b, 'seconds') / median(a, 'seconds'):.2f}"
        if "peak_rss_mb" in a[0]:
            line += f", peak RSS {median(a, 'peak_rss_mb'):.0f} -> {median(b, 'peak_rss_mb'):.0f} MB"
        if "prod_bytes_read" in a[0]:
            line += f", prod read {median(a, 'prod_bytes_read') / 1e6:.1f} -> {median(b, 'prod_bytes_read') / 1e6:.1f} MB"
        lines.append(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--growth", type=float, nargs="+", default=[2.0],
                        help="also measure once at the scale times each of these (10: ~4.6 GB of CSV)")
    parser.add_argument("--no-2x", dest="growth", action="store_const", const=[])
    parser.add_argument("--link-scale", type=float, default=0.25,
                        help="scale of the VPS link section (20 Mbit/s; x1 = 461 MB of CSV = ~3 min per runbook run)")
    parser.add_argument("--no-link", dest="link", action="store_false", help="skip the VPS link section")
    parser.add_argument("--only-link", action="store_true", help="only the VPS link section")
    parser.add_argument("--cut", action="store_true",
                        help="on the link, also a run reset at ~80%% of web_pages, and the run after it")
    parser.add_argument("--link-variant", action="append", default=[], metavar="TRANSPORT[:VAR=value,...]",
                        help="on the link, one more full sync per repetition with these settings (repeatable)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--only-diff", action="store_true",
                        help="only the diff: without a cache, and a cold then a warm tick with one (prod a raw COPY)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="websync-bench-"))
    bench = Bench(work)
    try:
        if args.only_diff:
            scales = [measure_diff_only(bench, args.scale, args.repeat)]
            for factor in args.growth:
                scales.append(measure_diff_only(bench, round(args.scale * factor, 6), args.repeat))
            for scale in scales:
                for line in diff_report(scale):
                    print(line, flush=True)
            if args.json:
                args.json.write_text(json.dumps(scales, indent=1, default=str))
            return 0
        scales: list[dict] = []
        if args.link:
            link = measure_link(bench, partial(websync, bench), args.link_scale, args.repeat, cut=args.cut,
                                password=PASSWORD, variants=tuple(args.link_variant))
            scales.append({"link": link})
            for line in link_report(link):
                print(line, flush=True)
        if args.json:
            args.json.write_text(json.dumps(scales, indent=1, default=str))
        factors = [] if args.only_link else [1.0, *args.growth]
        for index, factor in enumerate(factors):  # the first scale repeated and profiled, each growth point once
            first = index == 0
            scale = round(args.scale * factor, 6)
            scales.append(measure_scale(bench, scale, args.repeat if first else 1, profile=first))
            print(f"load average at the end of x{scale}: {os.getloadavg()}")
            for line in report(scales[-1]) + ([] if first else growth_report(scales[-1 - index], scales[-1])):
                print(line, flush=True)
            if args.json:
                args.json.write_text(json.dumps(scales, indent=1, default=str))
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
