"""The demo: two embedded PostgreSQL servers with drifted sample data, synced through Dagster twice.

    python -m websync_dagster.demo            # fresh dev + prod, `websync sync` twice, before/after tables
    python -m websync_dagster.demo --ssh      # the same, with prod reached through a loopback sshd (ssh_tunnel)
    python -m websync_dagster.demo --ui [--port 3000]   # same servers, data and settings, then `dg dev`

Everything lives under ``.demo/`` (servers' data, exports, the Dagster instance, ``demo.env``). After
``--ssh``, demo.env holds the SSH settings too (VPS_*: prod through an ``ssh_tunnel``), and ``--ui`` starts
that sshd again (new port and host key, demo.env rewritten) so that runs launched from the UI take the tunnel.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import psycopg

from websync_dagster.core.redact import safe_url
from websync_dagster.defs.instance import prepare_dagster_home
from websync_dagster.demo.postgres import EmbeddedPostgres
from websync_dagster.demo.sample_data import create_schemas, populate
from websync_dagster.demo.sshd import SshServer, start_sshd

DATABASE = "moncabinet"
DEFAULT_UI_PORT = 3000
UI_HOST = "127.0.0.1"
UI_START_S = 180
#: the page `make demo-ui` sends the user to: the lineage, one group per table (the root opens on run history)
LINEAGE_PATH = "/asset-groups"
VPS_SETTINGS = ("VPS_HOST", "VPS_PORT", "VPS_USER", "VPS_KEY_FILE", "VPS_KNOWN_HOSTS")


def _env_file(demo_dir: Path) -> Path:
    return demo_dir / "demo.env"


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


def _write_env(demo_dir: Path, env: dict[str, str]) -> Path:
    """demo.env: what `make demo-ui` (and `websync --env-file .demo/demo.env`) runs with; it holds passwords."""
    env_file = _env_file(demo_dir)
    env_file.touch(mode=0o600)
    env_file.chmod(0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return env_file


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
    _write_env(demo_dir, env)
    print(f"dev:  {sum(facts.dev_counts.values())} rows in {len(facts.dev_counts)} tables "
          f"(Arabic and French text, jsonb, arrays, enums, vectors)")
    print(f"prod: {sum(facts.prod_counts.values())} rows, drifted schema (other column order, prod-only and "
          f"dev-only columns, stricter CHECK and enum), one page already there under another id")
    return dev, prod, env


def _websync(mode: str, env: dict[str, str]) -> int:
    command = [sys.executable, "-m", "websync_dagster.cli", mode, "--env-file", "/dev/null"]
    return subprocess.call(command, env={**os.environ, **env})


def _with_ssh(demo_dir: Path, env: dict[str, str]) -> SshServer:
    """A loopback sshd standing in for the VPS; prod is then reached through an SSH tunnel (VPS_* with
    WEBSYNC_PROD_URL), which demo.env records for `make demo-ui`."""
    sshd = start_sshd(demo_dir.absolute() / "sshd")
    env.update({
        "VPS_HOST": sshd.host,
        "VPS_PORT": str(sshd.port),
        "VPS_USER": sshd.user,
        "VPS_KEY_FILE": str(sshd.key_file),
        "VPS_KNOWN_HOSTS": str(sshd.known_hosts),
    })
    _write_env(demo_dir.absolute(), env)
    print(f"VPS:  OpenSSH on {sshd.host}:{sshd.port}, host key {sshd.host_key_sha256} (checked against "
          f"{sshd.known_hosts}); prod is reached through a paramiko tunnel")
    return sshd


def describe_settings(env: dict[str, str]) -> list[str]:
    """The demo's settings as the UI's runs will use them, passwords left out."""
    lines = [f"dev:  {safe_url(env['WEBSYNC_DEV_URL'])}", f"prod: {safe_url(env['WEBSYNC_PROD_URL'])}"]
    if env.get("VPS_HOST"):
        lines.append(f"transport: ssh_tunnel through {env['VPS_USER']}@{env['VPS_HOST']}:{env['VPS_PORT']} "
                     f"(key {env['VPS_KEY_FILE']}, known hosts {env['VPS_KNOWN_HOSTS']})")
    else:
        lines.append("transport: direct (after `make demo-ssh`: ssh_tunnel through a loopback sshd)")
    lines.append(f"Dagster instance: {env['DAGSTER_HOME']}")
    return lines


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
        f"Open the UI on the same data, runs and settings:  make demo-ui [PORT={DEFAULT_UI_PORT}]   "
        f"(starts the servers again and runs `dg dev` with {_env_file(demo_dir)})"
    )
    return first or second


def ui_url(port: int) -> str:
    return f"http://{UI_HOST}:{port}"


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((UI_HOST, port))
        except OSError:
            return True
    return False


def _activated(env: dict[str, str]) -> dict[str, str]:
    """The environment with this venv activated, as `dg` expects (it warns about a venv mismatch otherwise)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "VIRTUAL_ENV": sys.prefix, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}


def _wait_until_served(url: str, process: subprocess.Popen) -> bool:
    """True once the webserver answers, False if `dg dev` exited or did not answer in time."""
    deadline = time.monotonic() + UI_START_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _serve(command: list[str], env: dict[str, str], url: str) -> int:
    """Runs `dg dev`, says where to open the UI once it answers, and waits for it (Ctrl-C stops both; a
    SIGTERM is passed on as the Ctrl-C dg dev shuts its webserver, daemon and code server down on)."""
    process = subprocess.Popen(command, env=env)
    signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGINT))
    try:
        if _wait_until_served(url, process):
            print(f"\nwebsync demo: the UI is ready: open {url}{LINEAGE_PATH}  (the lineage; Ctrl-C stops it)\n",
                  file=sys.stderr, flush=True)
        return process.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to dg dev as well: let it shut its processes down
        return process.wait()


def run_ui(demo_dir: Path, port: int = DEFAULT_UI_PORT, extra: Sequence[str] = ()) -> int:
    demo_dir = demo_dir.absolute()
    env_file = _env_file(demo_dir)
    if not env_file.exists():
        print("websync demo: run `make demo` (or `make demo-ssh`) first", file=sys.stderr)
        return 2
    if _port_in_use(port):
        print(f"websync demo: port {port} is in use; choose another: make demo-ui PORT={port + 1}", file=sys.stderr)
        return 2
    env = _read_env(env_file)
    passwords = {side: psycopg.conninfo.conninfo_to_dict(env[f"WEBSYNC_{side.upper()}_URL"])["password"]
                 for side in ("dev", "prod")}
    _servers(demo_dir, passwords)
    sshd = _with_ssh(demo_dir, env) if env.get("VPS_HOST") else None
    try:
        os.environ.update(env)
        prepare_dagster_home(env["DAGSTER_HOME"])
        command = [str(Path(sys.executable).parent / "dg"), "dev", "-h", UI_HOST, "-p", str(port), *extra]
        print("\n".join(f"websync demo: {line}" for line in describe_settings(env)), file=sys.stderr)
        print(f"websync demo: dg dev -p {port} with {env_file}; the UI will be at {ui_url(port)}",
              file=sys.stderr, flush=True)
        return _serve(command, _activated({**os.environ, **env}), ui_url(port))
    finally:
        if sshd is not None:
            sshd.stop()


def tcp_port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"PORT must be a TCP port number (1-65535), not {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="websync-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".demo"))
    parser.add_argument("--ssh", action="store_true", help="reach prod through a loopback sshd (needs openssh-server)")
    parser.add_argument("--ui", action="store_true", help="start the demo servers and `dg dev` on them")
    parser.add_argument("--port", type=tcp_port, default=DEFAULT_UI_PORT,
                        help=f"the UI's port with --ui (default {DEFAULT_UI_PORT})")
    args, extra = parser.parse_known_args(argv)
    return run_ui(args.dir, args.port, extra) if args.ui else run_demo(args.dir, ssh=args.ssh)

