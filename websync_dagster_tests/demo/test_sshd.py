"""Tests of the real-OpenSSH test server (websync_dagster_tests/sshd.py), using paramiko without mocks."""

from __future__ import annotations

import base64
import hashlib
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from websync_dagster_tests.sshd import SshServer, start_sshd_or_skip

pytestmark = [pytest.mark.timeout(60), pytest.mark.servers]


@pytest.fixture(scope="session")
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fakebin")
    script = d / "websync-fake-tool"
    script.write_text('#!/bin/sh\necho "fake-tool $*"\n')
    script.chmod(0o755)
    return d


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory, fake_bin: Path) -> Iterator[SshServer]:
    server = start_sshd_or_skip(
        tmp_path_factory.mktemp("sshd"), env_path=f"{fake_bin}:/usr/local/bin:/usr/bin:/bin"
    )
    try:
        yield server
    finally:
        server.stop()


def _client(known_hosts: Path) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _connect(server: SshServer, *, known_hosts: Path | None = None, **kwargs) -> paramiko.SSHClient:
    client = _client(known_hosts or server.known_hosts)
    kwargs.setdefault("username", server.user)
    if "password" not in kwargs:
        kwargs.setdefault("key_filename", str(server.key_file))
    client.connect(
        server.host, port=server.port, look_for_keys=False, allow_agent=False, timeout=10,
        banner_timeout=10, auth_timeout=10, **kwargs,
    )
    return client


def _exec(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=10)
    out = stdout.read().decode()
    err = stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def test_key_auth_exec_and_host_key_fingerprint(sshd_server: SshServer) -> None:
    client = _connect(sshd_server)
    try:
        assert _exec(client, "echo hello") == (0, "hello\n", "")
        assert _exec(client, "id -un")[1].strip() == sshd_server.user
        server_key = client.get_transport().get_remote_server_key()
        fp = base64.b64encode(hashlib.sha256(server_key.asbytes()).digest()).decode().rstrip("=")
        assert sshd_server.host_key_sha256 == f"SHA256:{fp}"
        assert server_key.get_name() == "ssh-ed25519"
    finally:
        client.close()


def test_remote_path_from_env_path(sshd_server: SshServer, fake_bin: Path) -> None:
    client = _connect(sshd_server)
    try:
        rc, out, _ = _exec(client, "echo $PATH")
        assert rc == 0
        assert out.strip().split(":")[0] == str(fake_bin)
        assert _exec(client, "websync-fake-tool ps -a") == (0, "fake-tool ps -a\n", "")
    finally:
        client.close()


def test_password_auth(sshd_server: SshServer) -> None:
    client = _connect(sshd_server, username=sshd_server.password_user, password=sshd_server.password)
    try:
        assert _exec(client, "id -un")[1].strip() == sshd_server.password_user
    finally:
        client.close()
    with pytest.raises(paramiko.AuthenticationException):
        _connect(sshd_server, username=sshd_server.password_user, password="wrong-" + sshd_server.password)


def test_encrypted_key_with_passphrase(sshd_server: SshServer) -> None:
    assert sshd_server.key_passphrase
    with pytest.raises(paramiko.PasswordRequiredException):
        paramiko.Ed25519Key.from_private_key_file(str(sshd_server.encrypted_key_file))
    client = _connect(
        sshd_server, key_filename=str(sshd_server.encrypted_key_file), passphrase=sshd_server.key_passphrase
    )
    try:
        assert _exec(client, "echo hello") == (0, "hello\n", "")
    finally:
        client.close()


def test_hashed_known_hosts(sshd_server: SshServer) -> None:
    line = sshd_server.hashed_known_hosts.read_text()
    assert line.startswith("|1|") and "127.0.0.1" not in line
    client = _connect(sshd_server, known_hosts=sshd_server.hashed_known_hosts)
    try:
        assert _exec(client, "echo hello")[1] == "hello\n"
    finally:
        client.close()


def test_wrong_known_hosts_is_refused(sshd_server: SshServer) -> None:
    client = _client(sshd_server.wrong_known_hosts)
    try:
        with pytest.raises(paramiko.BadHostKeyException):
            client.connect(
                sshd_server.host, port=sshd_server.port, username=sshd_server.user,
                key_filename=str(sshd_server.key_file), look_for_keys=False, allow_agent=False, timeout=10,
            )
    finally:
        client.close()


def test_unknown_host_is_rejected(sshd_server: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _connect(sshd_server, known_hosts=empty)


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()


def test_direct_tcpip_forwarding(sshd_server: SshServer, echo_server: tuple[str, int]) -> None:
    client = _connect(sshd_server)
    try:
        chan = client.get_transport().open_channel("direct-tcpip", echo_server, ("127.0.0.1", 0), timeout=10)
        chan.settimeout(10)
        payload = b"ping\n" + bytes(range(256)) * 1024
        chan.sendall(payload)
        chan.shutdown_write()
        received = bytearray()
        while data := chan.recv(65536):
            received += data
        assert bytes(received) == payload
        chan.close()
    finally:
        client.close()


def test_kill_sessions_cuts_open_connection(sshd_server: SshServer) -> None:
    client = _connect(sshd_server)
    try:
        transport = client.get_transport()
        _stdin, stdout, _ = client.exec_command("echo started; sleep 30", timeout=15)
        assert stdout.readline() == "started\n"
        assert sshd_server.kill_sessions() >= 1
        deadline = time.monotonic() + 5
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not transport.is_active()
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            client.exec_command("echo again", timeout=5)
    finally:
        client.close()
    # The listener survives and accepts new connections.
    client = _connect(sshd_server)
    try:
        assert _exec(client, "echo hello")[1] == "hello\n"
    finally:
        client.close()
