"""``ssh_tunnel``: psycopg talks to prod through a paramiko ``direct-tcpip`` channel.

A local listener on 127.0.0.1 forwards each connection over the SSH connection to prod's Postgres as
seen from the VPS, so every engine feature works unchanged. ``docker:<container>`` as the host of
``WEBSYNC_PROD_URL`` is resolved on the VPS with ``docker inspect`` (nothing changes on the server).
SSH compression is on: the COPY stream crosses the link compressed.
"""

from __future__ import annotations

import contextlib
import re
import select
import shlex
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import paramiko
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.redact import safe_url
from websync_dagster.core.settings import Settings
from websync_dagster.transport.direct import PsycopgSession, connect, prod_session_params
from websync_dagster.transport.ssh import (
    MAX_PACKET_BYTES,
    WINDOW_BYTES,
    SshConnection,
    SshError,
    SshTransport,
    remote_failure,
)

_DOCKER_HOST = re.compile(r"^(?P<scheme>[a-z]+://)(?P<userinfo>[^@/]*@)?docker:(?P<container>[A-Za-z0-9][\w.-]*)"
                          r"(?::(?P<port>\d+))?(?P<rest>/.*)?$")
_BUFFER = 1 << 18


@dataclass(frozen=True)
class ProdEndpoint:
    """Where prod's Postgres listens, as seen from the VPS."""

    host: str
    port: int


def split_docker_url(url: str) -> tuple[str, str | None, int | None]:
    """``postgresql://u:p@docker:name:5432/db`` -> (URL with a placeholder host, container, port)."""
    match = _DOCKER_HOST.match(url)
    if not match:
        return url, None, None
    port = int(match["port"]) if match["port"] else None
    rebuilt = f"{match['scheme']}{match['userinfo'] or ''}docker-container{match['rest'] or '/'}"
    return rebuilt, match["container"], port


def resolve_container(ssh: SshConnection, container: str) -> str:
    """The container's IP address on the VPS, from ``docker inspect``."""
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    command = f"docker inspect -f {shlex.quote(template)} {shlex.quote(container)}"
    result = ssh.run(command)
    if result.status != 0:
        text = result.stderr.decode("utf-8", "replace")
        if "No such object" in text or "No such container" in text:
            raise SshError(f"container {container!r} not found on the VPS {ssh.settings.host} (docker inspect)")
        raise SshError(remote_failure(command, result, ssh.redactor))
    addresses = result.stdout.decode().split()
    if not addresses:
        raise SshError(f"container {container!r} on {ssh.settings.host} has no IP address (is it running?)")
    return addresses[0]


class _Forwarder:
    """Accepts local connections and pumps each through its own direct-tcpip channel."""

    def __init__(self, ssh: SshConnection, target: ProdEndpoint) -> None:
        self.ssh = ssh
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="websync-tunnel", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, peer = self.listener.accept()
            except OSError:
                return
            try:
                channel = self.ssh.transport.open_channel(
                    "direct-tcpip", (self.target.host, self.target.port), peer, timeout=15,
                    window_size=WINDOW_BYTES, max_packet_size=MAX_PACKET_BYTES,
                )
            except (paramiko.SSHException, SshError, OSError):
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, channel), daemon=True).start()

    def _pump(self, client: socket.socket, channel: paramiko.Channel) -> None:
        try:
            while True:
                readable, _, _ = select.select([client, channel], [], [], 1.0)
                if self._closing.is_set() or channel.closed:
                    break
                if client in readable:
                    data = client.recv(_BUFFER)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in readable:
                    data = channel.recv(_BUFFER)
                    if not data:
                        break
                    client.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the connection was cut: psycopg sees its socket close and the table's load fails
        finally:
            client.close()
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                channel.close()

    def close(self) -> None:
        self._closing.set()
        self.listener.close()


class SshTunnelTransport(SshTransport):
    name = "ssh_tunnel"

    def __init__(self, settings: Settings) -> None:
        if settings.ssh is None or not settings.prod_url:
            raise ConfigError("ssh_tunnel needs VPS_HOST and WEBSYNC_PROD_URL")
        super().__init__(settings)
        self.prod_url = settings.prod_url
        self.url, self.container, docker_port = split_docker_url(settings.prod_url)
        params = conninfo_to_dict(self.url)
        self.endpoint_port = docker_port or int(params.get("port") or 5432)
        self.endpoint_host = str(params.get("host") or "127.0.0.1")

    def describe(self) -> str:
        where = f"docker:{self.container}" if self.container else self.endpoint_host
        return f"{self._via()} to {where}:{self.endpoint_port}"

    @contextlib.contextmanager
    def session(self) -> Iterator[PsycopgSession]:
        with self._connection() as ssh:
            host = resolve_container(ssh, self.container) if self.container else self.endpoint_host
            forwarder = _Forwarder(ssh, ProdEndpoint(host, self.endpoint_port))
            try:
                local = make_conninfo(self.url, host="127.0.0.1", port=str(forwarder.port))
                shown = f"{safe_url(self.prod_url)} via SSH {ssh.where}"
                conn = connect(local, what="prod", shown=shown, redactor=self.redactor, autocommit=True,
                               **prod_session_params(local, self.settings.prod_idle_timeout_s))
                try:
                    yield PsycopgSession(conn, self.name)
                finally:
                    conn.close()
            finally:
                forwarder.close()
