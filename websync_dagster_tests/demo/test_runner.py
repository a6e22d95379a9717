"""`make demo-ui [PORT=...]` (``python -m websync_dagster.demo --ui --port N``): its port argument, a busy
port, and, after `make demo-ssh`, the UI served on the SSH demo's settings."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from websync_dagster.demo.ports import free_port
from websync_dagster.demo.runner import main, run_ui
from websync_dagster.demo.sshd import SSHD
from websync_dagster_tests.defs.test_webserver import graphql

REPO = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "websync_dagster.demo"]


@pytest.mark.parametrize("port", ["0", "70000", "abc"])
def test_port_that_is_not_a_tcp_port_is_refused(port, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--dir", str(tmp_path), "--ui", "--port", port])
    assert exit_info.value.code == 2
    assert f"PORT must be a TCP port number (1-65535), not '{port}'" in capsys.readouterr().err


def test_busy_port_is_named_before_anything_starts(tmp_path, capsys):
    (tmp_path / "demo.env").write_text("WEBSYNC_DEV_URL=postgresql://u:p@127.0.0.1:1/d\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run_ui(tmp_path, port) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"websync demo: port {port} is in use; choose another: make demo-ui PORT={port + 1}"]
    assert not (tmp_path / "pg").exists()


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _wait_for(pattern: str, log: Path, proc: subprocess.Popen, timeout: float = 240) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if match := re.search(pattern, log.read_text()):
            return match
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{pattern!r} not printed within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.servers
@pytest.mark.skipif(not SSHD.exists() or os.geteuid() != 0, reason="the SSH demo needs /usr/sbin/sshd and root")
def test_demo_ui_after_demo_ssh_serves_on_the_ssh_settings(tmp_path):
    demo_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBSYNC_", "VPS_", "DAGSTER_"))}
    ssh_demo = subprocess.run([*DEMO, "--dir", str(demo_dir), "--ssh"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
    assert ssh_demo.returncode == 0, (ssh_demo.stdout + ssh_demo.stderr)[-3000:]
    assert {"VPS_HOST", "VPS_PORT", "VPS_USER", "VPS_KEY_FILE", "VPS_KNOWN_HOSTS"} <= set(_env(demo_dir / "demo.env"))

    port, log = free_port(), tmp_path / "ui.log"
    with open(log, "w") as out:
        ui = subprocess.Popen([*DEMO, "--dir", str(demo_dir), "--ui", "--port", str(port)], cwd=REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(re.escape(f"websync demo: the UI is ready: open http://127.0.0.1:{port}/asset-groups "), log, ui)
        settings = _env(demo_dir / "demo.env")  # rewritten for the sshd started again
        tunnel = _wait_for(r"transport: ssh_tunnel through websync@127\.0\.0\.1:(\d+)", log, ui)
        assert tunnel.group(1) == settings["VPS_PORT"]
        passwords = [conninfo_to_dict(settings[f"WEBSYNC_{side}_URL"])["password"] for side in ("DEV", "PROD")]
        assert not [p for p in passwords if p in log.read_text()]
        status = subprocess.run([sys.executable, "-m", "websync_dagster.cli", "status", "--env-file",
                                 str(demo_dir / "demo.env")], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=300)
        assert status.returncode == 0 and "transport=ssh_tunnel" in status.stderr, status.stderr[-3000:]
        data = graphql(f"http://127.0.0.1:{port}", "{ assetNodes { assetKey { path } groupName } }")
        assert {n["groupName"] for n in data["assetNodes"]} == {
            "web_sources", "knowledge_base", "web_pages", "web_files", "prod"}
    finally:
        ui.send_signal(signal.SIGTERM)  # passed on to dg dev, which stops its processes
        ui.wait(90)
    with pytest.raises(OSError):  # the webserver stopped with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
