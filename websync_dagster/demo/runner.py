"""The demo: two embedded PostgreSQL servers with drifted sample data, synced through Dagster twice.

    python -m websync_dagster.demo            # fresh dev + prod, `websync sync` twice, before/after tables
    python -m websync_dagster.demo --ssh      # the same, with prod reached through a loopback sshd (ssh_tunnel)
    python -m websync_dagster.demo --ui       # same servers and data, then `dagster dev` on them

Everything lives under ``.demo/`` (servers' data, exports, the Dagster instance, ``demo.env``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg

from websync_dagster.defs.instance import prepare_dagster_home
from websync_dagster.demo.postgres import EmbeddedPostgres
from websync_dagster.demo.sample_data import create_schemas, populate
from websync_dagster.demo.sshd import SshServer, start_sshd

DATABASE = "moncabinet"


def _env_file(demo_dir: Path) -> Path:
    return demo_dir / "demo.env"


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


def _servers(demo_dir: Path, passwords: dict[str, str]) -> tuple[EmbeddedPostgres, EmbeddedPostgres]:
    dev = EmbeddedPostgres(demo_dir / "pg" / "dev", password=passwords["dev"]).start()
    prod = EmbeddedPostgres(demo_dir / "pg" / "prod", password=passwords["prod"]).start()
    return dev, prod


def _fresh_database(server: EmbeddedPostgres) -> str:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    return server.url(DATABASE)


def prepare(demo_dir: Path) -> tuple[EmbeddedPostgres, EmbeddedPostgres, dict[str, str]]:
    """Start both servers, load the sample, write demo.env; returns the servers and the environment."""
    demo_dir = demo_dir.absolute()
    demo_dir.mkdir(parents=True, exist_ok=True)
    passwords = {"dev": secrets.token_urlsafe(12), "prod": secrets.token_urlsafe(12)}
    dev, prod = _servers(demo_dir, passwords)
    dev_url, prod_url = _fresh_database(dev), _fresh_database(prod)
    with psycopg.connect(dev_url) as d, psycopg.connect(prod_url) as p:
        create_schemas(d, p)
        facts = populate(d, p)
    env = {
        "WEBSYNC_DEV_URL": dev_url,
        "WEBSYNC_PROD_URL": prod_url,
        "WEBSYNC_EXPORT_DIR": str(demo_dir / "exports"),
        "DAGSTER_HOME": str(demo_dir / "dagster_home"),
    }
    env_file = _env_file(demo_dir)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)
    print(f"dev:  {sum(facts.dev_counts.values())} rows in {len(facts.dev_counts)} tables "
          f"(Arabic and French text, jsonb, arrays, enums, vectors)")
    print(f"prod: {sum(facts.prod_counts.values())} rows, drifted schema (other column order, prod-only and "
          f"dev-only columns, stricter CHECK and enum), one page already there under another id")
    return dev, prod, env


def _websync(mode: str, env: dict[str, str]) -> int:
    command = [sys.executable, "-m", "websync_dagster.cli", mode, "--env-file", "/dev/null"]
    return subprocess.call(command, env={**os.environ, **env})


def _with_ssh(demo_dir: Path, env: dict[str, str]) -> SshServer:
    """A loopback sshd standing in for the VPS; prod is then reached through an SSH tunnel."""
    sshd = start_sshd(demo_dir.absolute() / "sshd")
    env.update({
        "VPS_HOST": sshd.host,
        "VPS_PORT": str(sshd.port),
        "VPS_USER": sshd.user,
        "VPS_KEY_FILE": str(sshd.key_file),
        "VPS_KNOWN_HOSTS": str(sshd.known_hosts),
    })
    print(f"VPS:  OpenSSH on {sshd.host}:{sshd.port}, host key {sshd.host_key_sha256} (checked against "
          f"{sshd.known_hosts}); prod is reached through a paramiko tunnel")
    return sshd


def run_demo(demo_dir: Path, *, ssh: bool = False) -> int:
    _, _, env = prepare(demo_dir)
    sshd = _with_ssh(demo_dir, env) if ssh else None
    try:
        return _run_syncs(demo_dir, env)
    finally:
        if sshd is not None:
            sshd.stop()


def _run_syncs(demo_dir: Path, env: dict[str, str]) -> int:
    print("\n== first sync: ships the rows prod lacks ==", flush=True)
    first = _websync("sync", env)
    print("\n== second sync: nothing new to insert (rows prod refused are retried and reported) ==", flush=True)
    second = _websync("sync", env)
    print("\n== dev vs prod after the sync ==", flush=True)
    _websync("diff", env)
    print(
        f"\nExports and reject files: {env['WEBSYNC_EXPORT_DIR']}\n"
        f"Open the UI on the same data and runs:  make demo-ui   "
        f"(starts the two servers and runs `dagster dev -w workspace.yaml` with {_env_file(demo_dir)})"
    )
    return first or second


def run_ui(demo_dir: Path, extra: Sequence[str]) -> int:
    demo_dir = demo_dir.absolute()
    env_file = _env_file(demo_dir)
    if not env_file.exists():
        print("websync demo: run `make demo` first", file=sys.stderr)
        return 2
    env = _read_env(env_file)
    passwords = {side: psycopg.conninfo.conninfo_to_dict(env[f"WEBSYNC_{side.upper()}_URL"])["password"]
                 for side in ("dev", "prod")}
    _servers(demo_dir, passwords)
    os.environ.update(env)
    prepare_dagster_home(env["DAGSTER_HOME"])
    command = ["dagster", "dev", "-w", "workspace.yaml", *extra]
    print(f"websync demo: {' '.join(command)} with {env_file}", file=sys.stderr)
    return subprocess.call(command, env={**os.environ, **env})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="websync-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".demo"))
    parser.add_argument("--ssh", action="store_true", help="reach prod through a loopback sshd (needs openssh-server)")
    parser.add_argument("--ui", action="store_true", help="start the demo servers and `dagster dev` on them")
    args, extra = parser.parse_known_args(argv)
    return run_ui(args.dir, extra) if args.ui else run_demo(args.dir, ssh=args.ssh)

