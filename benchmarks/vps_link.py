"""The VPS link section of the benchmark: the runbook, `ssh_tunnel` and `ssh_psql` side by side through
a 20 Mbit/s, 40 ms round-trip link (``benchmarks/link.py``) in front of the loopback sshd.

The runbook over the link: each table `\\copy`'d from dev to a CSV with header (local, as today), the
four CSVs shipped with one `scp` (OpenSSH, no compression, as the runbook does), then one `ssh` running
`docker exec -i <container> psql` on the "VPS" with the runbook's script (temp table, `\\copy` from the
shipped file, `INSERT ... ON CONFLICT (id) DO NOTHING`, per table). `docker` on the VPS is the tests'
stand-in (`websync_dagster_tests/fake_vps/docker`: runs psql with the container's environment).
"""

from __future__ import annotations

import pwd
import shutil
import statistics
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psycopg
import zstandard

from benchmarks.dataset import Scale, generate
from benchmarks.link import ThrottledLink
from websync_dagster.core.tables import DEFAULT_TABLES
from websync_dagster.demo.sshd import make_traversable

REPO = Path(__file__).resolve().parent.parent
FAKE_DOCKER = REPO / "websync_dagster_tests" / "fake_vps" / "docker"
CONTAINER = "moncabinet-postgres"
TRANSPORTS = ("ssh_tunnel", "ssh_psql")


@dataclass
class Vps:
    """The loopback sshd seen through the throttled link, with a `docker` stand-in for prod's container."""

    link: ThrottledLink
    user: str
    key_file: Path
    known_hosts: Path
    docker: Path

    def env(self) -> dict[str, str]:
        return {"VPS_HOST": "127.0.0.1", "VPS_PORT": str(self.link.port), "VPS_USER": self.user,
                "VPS_KEY_FILE": str(self.key_file), "VPS_KNOWN_HOSTS": str(self.known_hosts)}

    def openssh_options(self) -> list[str]:
        return ["-i", str(self.key_file), "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "Compression=no", "-o", "LogLevel=ERROR"]

    def psql_command(self, prod_url: str) -> str:
        return f"{self.docker} exec -i {CONTAINER} psql -U postgres -d {prod_url.rsplit('/', 1)[1]}"

    def via(self, transport: str, prod_url: str) -> tuple[str, dict[str, str]]:
        """(WEBSYNC_PROD_URL, the rest of the environment) of a `websync` run over ``transport``."""
        if transport == "ssh_tunnel":
            return prod_url, self.env()
        return "", {**self.env(), "WEBSYNC_PROD_PSQL": self.psql_command(prod_url)}


def open_vps(bench, password: str) -> Vps:
    """The link in front of the bench's sshd, a known_hosts line for the link's port, and the docker stand-in."""
    sshd = bench.sshd
    link = ThrottledLink(sshd.port).start()
    host_key = " ".join((sshd.workdir / "ssh_host_ed25519_key.pub").read_text().split()[:2])
    known_hosts = bench.work / "link_known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{link.port} {host_key}\n")
    bin_dir = bench.work / "vps_bin"
    (bin_dir / "containers").mkdir(parents=True)
    docker = bin_dir / "docker"
    shutil.copy(FAKE_DOCKER, docker)
    docker.chmod(0o755)
    container = bin_dir / "containers" / f"{CONTAINER}.env"
    container.write_text(f"CONTAINER_IP=127.0.0.1\nPGHOST=127.0.0.1\nPGPORT={bench.prod.port}\nPGUSER=postgres\n"
                         f"PGPASSWORD={password}\nPATH={bench.prod.bin_dir}:/usr/local/bin:/usr/bin:/bin\n")
    container.chmod(0o644)
    make_traversable(bin_dir / "containers")
    make_traversable(bench.prod.bin_dir)
    return Vps(link, sshd.user, sshd.key_file, known_hosts, docker)


def runbook_over_link(bench, vps: Vps, dev_url: str, prod_url: str) -> dict:
    """The runbook through the link: CSVs out of dev, one scp, one ssh running psql on the VPS."""
    psql = str(bench.dev.bin_dir / "psql")
    remote_dir = Path(pwd.getpwnam(vps.user).pw_dir)
    up, down = vps.link.counters()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        script = ["\\set ON_ERROR_STOP 1"]
        for table in DEFAULT_TABLES:
            cols = ", ".join(bench.shared_columns(dev_url, prod_url, table))
            csv = Path(tmp) / f"runbook_{table}.csv"
            subprocess.run([psql, dev_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                            f"\\copy (SELECT {cols} FROM {table}) TO '{csv}' CSV HEADER"], check=True)
            script += [f"BEGIN;\nCREATE TEMP TABLE tmp_{table} AS SELECT {cols} FROM {table} WITH NO DATA;",
                       f"\\copy tmp_{table} FROM '{remote_dir / csv.name}' CSV HEADER",
                       f"INSERT INTO {table} ({cols}) SELECT {cols} FROM tmp_{table} ON CONFLICT (id) DO NOTHING;",
                       "COMMIT;"]
        files = sorted(Path(tmp).glob("*.csv"))
        csv_bytes = sum(f.stat().st_size for f in files)
        subprocess.run(["scp", "-q", "-P", str(vps.link.port), *vps.openssh_options(), *map(str, files),
                        f"{vps.user}@127.0.0.1:"], check=True)
        subprocess.run(["ssh", "-p", str(vps.link.port), *vps.openssh_options(), f"{vps.user}@127.0.0.1",
                        vps.psql_command(prod_url) + " -X -q"], input="\n".join(script).encode(), check=True)
    seconds = time.perf_counter() - started
    up2, down2 = vps.link.counters()
    return {"seconds": seconds, "wall_s": seconds, "csv_bytes": csv_bytes, "wire_up": up2 - up,
            "wire_down": down2 - down}


def websync_over_link(run_websync: Callable[..., dict], vps: Vps, transport: str, dev_url: str, prod_url: str,
                      home: Path, *, cut_after: int | None = None, extra: dict[str, str] | None = None) -> dict:
    """One `websync sync` process through the link; the link's byte counts each way added. ``extra``:
    more environment for the process (a setting under test)."""
    url, via = vps.via(transport, prod_url)
    via = {**via, **(extra or {})}
    up, down = vps.link.counters()
    cuts = vps.link.cuts
    vps.link.cut_after(cut_after)
    try:
        result = run_websync(dev_url, url, home, via=via, check=False)
    finally:
        vps.link.cut_after(None)
    up2, down2 = vps.link.counters()
    failed = []
    if result["exit"] != 0 and cut_after is None:  # kept in the figures as a failure, then run again once
        failed = [{"transport": transport, "wall_s": result["wall_s"], "error": result["error"],
                   "detail": result["detail"]}]
        up, down = vps.link.counters()
        result = run_websync(dev_url, url, home, via=via)
        up2, down2 = vps.link.counters()
    return {**result, "run_s": result.get("seconds", float("nan")), "seconds": result["wall_s"],
            "wire_up": up2 - up, "wire_down": down2 - down, "failed_before": failed, "cuts": vps.link.cuts - cuts}


def prod_counts(prod_url: str) -> dict[str, int]:
    with psycopg.connect(prod_url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DEFAULT_TABLES}  # noqa: S608


def cut_threshold(full: dict, biggest: str = "web_pages") -> int:
    """Bytes up the link before ~80% of ``biggest`` has crossed, from an uncut run's per-table wire bytes
    (tables go in FK order, one after the other)."""
    before = 0
    for table in DEFAULT_TABLES:
        if table == biggest:
            return int(before + 0.8 * full["wire_by_table"][table])
        before += full["wire_by_table"][table]
    raise ValueError(biggest)


def parse_variant(spec: str) -> tuple[str, str, dict[str, str]]:
    """``TRANSPORT[:VAR=value,...]`` (e.g. ``ssh_tunnel:WEBSYNC_SSH_COMPRESSION_LEVEL=1``): (name, transport,
    extra environment) of one more full sync through the link."""
    transport, _, assignments = spec.partition(":")
    if transport not in TRANSPORTS:
        raise ValueError(f"--link-variant {spec!r}: the transport must be one of {', '.join(TRANSPORTS)}")
    env = dict(a.split("=", 1) for a in assignments.split(",") if a)
    return f"{transport}[{assignments}]", transport, env


def measure_link(bench, run_websync: Callable[..., dict], factor: float, repeat: int, *, cut: bool,
                 password: str, variants: tuple[str, ...] = ()) -> dict:
    """Runbook, ssh_tunnel and ssh_psql through the link: full, no-op re-run, 1% new rows; each of
    ``variants`` (``parse_variant``) as one more full sync per repetition; then, with ``cut``, a run reset
    at ~80% of web_pages and the run after it."""
    dev_url = bench.fresh(bench.dev, f"linkdev{str(factor).replace('.', '_')}")
    with psycopg.connect(dev_url) as dev:
        rows = generate(dev, Scale().times(factor))
    vps = open_vps(bench, password)
    results: dict[str, list[dict]] = {}

    def timed(name: str, measure: Callable[[], dict]) -> dict:
        bench.settle()
        results.setdefault(name, []).append(measure())
        return results[name][-1]

    def home(label: str) -> Path:
        path = bench.work / f"link_home_{label}_{bench.counter}"
        path.mkdir()
        return path

    try:
        synced: dict[str, str] = {}
        for _ in range(repeat):
            prod_url = bench.fresh(bench.prod, "link_runbook")
            timed("runbook_full", partial(runbook_over_link, bench, vps, dev_url, prod_url))
            timed("runbook_rerun", partial(runbook_over_link, bench, vps, dev_url, prod_url))
            for transport in TRANSPORTS:
                prod_url = bench.fresh(bench.prod, f"link_{transport}")
                synced[transport] = prod_url
                where = home(transport)
                for step in ("full", "noop"):
                    timed(f"{transport}_{step}", partial(websync_over_link, run_websync, vps, transport, dev_url,
                                                         prod_url, where))
            for name, transport, extra in map(parse_variant, variants):
                prod_url = bench.fresh(bench.prod, "link_variant")
                timed(f"{name}_full", partial(websync_over_link, run_websync, vps, transport, dev_url, prod_url,
                                              home("variant"), extra=extra))
        with psycopg.connect(dev_url) as dev:
            generate(dev, Scale().times(factor * 0.01), first=10_000_000)
        for _ in range(repeat):
            for transport in TRANSPORTS:
                prod_url = bench.fresh(bench.prod, f"link_{transport}_1pct",
                                       template=synced[transport].rsplit("/", 1)[1])
                timed(f"{transport}_1pct", partial(websync_over_link, run_websync, vps, transport, dev_url,
                                                   prod_url, home(f"{transport}_1pct")))
        if cut:
            for transport in TRANSPORTS:
                measure_cut(bench, run_websync, vps, transport, dev_url, results, timed, home)
        results["compression"] = [compression_levels(bench, dev_url)]
    finally:
        vps.link.stop()
    return {"factor": factor, "rows": rows, "results": results}


def measure_cut(bench, run_websync: Callable[..., dict], vps: Vps, transport: str, dev_url: str,
                results: dict[str, list[dict]], timed: Callable[[str, Callable[[], dict]], dict],
                home: Callable[[str], Path]) -> None:
    """A full sync reset at ~80% of web_pages (what the user sees, what prod holds), then the next run."""
    threshold = cut_threshold(results[f"{transport}_full"][-1])
    prod_url = bench.fresh(bench.prod, f"link_{transport}_cut")
    where = home(f"{transport}_cut")
    cut = timed(f"{transport}_cut", partial(websync_over_link, run_websync, vps, transport, dev_url, prod_url,
                                            where, cut_after=threshold))
    cut["prod_rows_after_cut"] = prod_counts(prod_url)
    cut["cut_after_up_bytes"] = threshold
    after = timed(f"{transport}_after_cut", partial(websync_over_link, run_websync, vps, transport, dev_url,
                                                    prod_url, where))
    after["prod_rows"] = prod_counts(prod_url)


def compression_levels(bench, dev_url: str, sample_mb: int = 24) -> dict:
    """Bytes and CPU seconds of each compression level on a sample of the benchmark's CSV (each table's
    share of its first rows), compressed as each transport does: ssh_tunnel = zlib inside paramiko,
    which flushes fully (history reset) after every SSH packet (32 kB here); ssh_psql = one zstd stream."""
    sample = csv_sample(bench, dev_url, sample_mb * 1_000_000)
    pieces = [sample[i:i + 32 * 1024] for i in range(0, len(sample), 32 * 1024)]
    out: dict[str, dict] = {"sample_bytes": {"bytes": len(sample)}}

    def measure(name: str, compress: Callable[[], int]) -> None:
        cpu = time.process_time()
        size = compress()
        out[name] = {"ratio": size / len(sample), "cpu_s_per_100mb": (time.process_time() - cpu) * 1e8 / len(sample)}

    def zlib_packets(level: int, flush: int) -> int:
        z = zlib.compressobj(level)
        return sum(len(z.compress(p) + z.flush(flush)) for p in pieces)

    def zstd_stream(level: int) -> int:
        z = zstandard.ZstdCompressor(level=level).compressobj()
        return sum(len(z.compress(p)) for p in pieces) + len(z.flush())

    for level in (1, 3, 6, 9):
        measure(f"zlib {level}, full flush per packet (paramiko)", partial(zlib_packets, level, zlib.Z_FULL_FLUSH))
        measure(f"zlib {level}, sync flush per packet (OpenSSH)", partial(zlib_packets, level, zlib.Z_SYNC_FLUSH))
    for level in (1, 3, 6, 9, 12, 15, 19):
        measure(f"zstd {level}, one stream (ssh_psql)", partial(zstd_stream, level))
    return out


def csv_sample(bench, dev_url: str, size: int) -> bytes:
    """About ``size`` bytes of dev's rows as CSV (all columns), each table contributing its share of the whole."""
    with psycopg.connect(dev_url) as conn:
        sizes = {t: conn.execute("SELECT pg_total_relation_size(%s::regclass)", [t]).fetchone()[0]
                 for t in DEFAULT_TABLES}
    total = sum(sizes.values())
    parts = []
    with psycopg.connect(dev_url) as conn:
        for table in DEFAULT_TABLES:
            want, got = size * sizes[table] // total, 0
            with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT csv)") as copy:  # noqa: S608
                for chunk in copy:  # read to the end: a COPY left half-read keeps the connection busy
                    if got < want:
                        parts.append(bytes(chunk))
                        got += len(chunk)
    return b"".join(parts)


LINK_RATE = 20e6 / 8


def median_of(values: list[dict], key: str) -> float:
    return statistics.median(v[key] for v in values)


def link_report(link: dict) -> list[str]:
    r = link["results"]
    csv = median_of(r["runbook_full"], "csv_bytes")
    lines = [f"VPS link (20 Mbit/s, 40 ms RTT, proxy on loopback) at x{link['factor']}: "
             f"{sum(link['rows'].values())} rows, {csv / 1e6:.1f} MB of CSV",
             f"  {'measurement':22} {'wall s':>8} {'run s':>7} {'up MB':>8} {'down MB':>8} {'up/CSV':>7} "
             f"{'RSS MB':>7} n"]
    for name, values in r.items():
        if name == "compression" or not values or "wire_up" not in values[0]:
            continue
        ok = [v for v in values if v.get("exit", 0) == 0] or values
        run_s = f"{median_of(ok, 'run_s'):7.2f}" if "run_s" in ok[0] else f"{'-':>7}"
        rss = f"{median_of(ok, 'peak_rss_mb'):7.0f}" if "peak_rss_mb" in ok[0] else f"{'-':>7}"
        up, down = median_of(values, "wire_up"), median_of(values, "wire_down")
        lines.append(f"  {name:22} {median_of(values, 'wall_s'):8.2f} {run_s} {up / 1e6:8.2f} {down / 1e6:8.2f} "
                     f"{up / csv:7.3f} {rss} {len(values)}")
    runbook, rerun = median_of(r["runbook_full"], "wall_s"), median_of(r["runbook_rerun"], "wall_s")
    lines.append("  targets on the link (process wall times, medians):")
    for t in TRANSPORTS:
        full = median_of(r[f"{t}_full"], "wall_s")
        lines.append(f"    {t:10} full / runbook full {full / runbook:5.2f} (<= 0.45) | no-op / runbook re-run "
                     f"{100 * median_of(r[f'{t}_noop'], 'wall_s') / rerun:5.1f}% (<= 3%) | 1% / full "
                     f"{100 * median_of(r[f'{t}_1pct'], 'wall_s') / full:5.1f}% (<= 8%) | wire up / CSV "
                     f"{median_of(r[f'{t}_full'], 'wire_up') / csv:5.3f} (runbook "
                     f"{median_of(r['runbook_full'], 'wire_up') / csv:5.3f})")
        for name in (n for n in r if n.startswith(f"{t}[") and n.endswith("_full")):
            variant = median_of(r[name], "wall_s")
            lines.append(f"    {name[:-5]:10} full / runbook full {variant / runbook:5.2f} | wire up / CSV "
                         f"{median_of(r[name], 'wire_up') / csv:5.3f} | full {variant:.2f} s")
        if f"{t}_cut" in r:
            cut, after = r[f"{t}_cut"][-1], r[f"{t}_after_cut"][-1]
            outcome = ("the same run completed" if cut["exit"] == 0
                       else f"the run failed: {cut.get('error', '')[:160]}")
            lines.append(f"    {t:10} cut (x{cut.get('cuts', '?')}) at {cut['cut_after_up_bytes'] / 1e6:.1f} MB up: "
                         f"{outcome} in "
                         f"{cut['wall_s']:.1f} s = {cut['wall_s'] / full:.2f}x an uncut full sync (<= 1.3), "
                         f"{cut['wire_up'] / 1e6:.1f} MB up; prod then {cut['prod_rows_after_cut']}; the next run "
                         f"{after['wall_s']:.1f} s, inserted {after['rows_inserted']:.0f}; cut run + next = "
                         f"{(cut['wall_s'] + after['wall_s']) / full:.2f}x")
    for name, values in r.items():
        for failure in (f for v in values if isinstance(v, dict) for f in v.get("failed_before", [])):
            lines.append(f"  FAILED once in {name} after {failure['wall_s']:.1f} s (then ran again): "
                         f"{failure['error']}")
            lines += ["    " + line for line in failure["detail"].splitlines()[-12:]]
    if "compression" in r:
        comp = r["compression"][0]
        sample = comp.pop("sample_bytes")["bytes"]
        x1_csv = csv / link["factor"]
        lines.append(f"  compression levels on a {sample / 1e6:.0f} MB CSV sample (one core, in-process); at x1 "
                     f"({x1_csv / 1e6:.0f} MB of CSV): wire seconds at 20 Mbit/s, CPU seconds of the sender")
        for name, v in comp.items():
            lines.append(f"    {name:45} wire/CSV {v['ratio']:5.3f}  CPU {v['cpu_s_per_100mb']:6.2f} s/100 MB  "
                         f"x1: wire {x1_csv * v['ratio'] / LINK_RATE:6.1f} s, "
                         f"CPU {x1_csv * v['cpu_s_per_100mb'] / 1e8:6.1f} s")
        comp["sample_bytes"] = {"bytes": sample}
    return lines
