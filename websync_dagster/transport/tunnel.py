"""``ssh_tunnel``: psycopg talks to prod through a paramiko ``direct-tcpip`` channel.

A local listener on 127.0.0.1 forwards each connection over the SSH connection to prod's Postgres as
seen from the VPS, so every engine feature works unchanged. ``docker:<container>`` as the host of
``WEBSYNC_PROD_URL`` is resolved on the VPS with ``docker inspect`` (nothing changes on the server).
SSH compression is on: the COPY stream crosses the link compressed.

When the VPS refuses a tunnel's channel (its sshd forbids forwarding, or nothing listens at the target as
seen from the VPS), psycopg only sees its socket close; the forwarder keeps the refusal, and the session
says that instead.
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

from websync_dagster.core.errors import ConfigError, SyncError
from websync_dagster.core.redact import safe_url
from websync_dagster.core.settings import Settings, reveal
from websync_dagster.transport.direct import PsycopgSession, connect, prod_session_params
from websync_dagster.transport.ssh import SshConnection, SshError, SshTransport, remote_failure
from websync_dagster.transport.ssh_wire import MAX_PACKET_BYTES, WINDOW_BYTES

_DOCKER_HOST = re.compile(r"^(?P<scheme>[a-z]+://)(?P<userinfo>[^@/]*@)?docker:(?P<container>[A-Za-z0-9][\w.-]*)"
                          r"(?::(?P<port>\d+))?(?P<rest>/.*)?$")
_BUFFER = 1 << 18


@dataclass(frozen=True)
class ProdEndpoint:
    """Where prod's Postgres listens, as seen from the VPS."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


#: why an SSH server refuses to open a channel (RFC 4254 5.1 reason codes), in its user's terms
_REFUSALS = {
    paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
        "administratively prohibited (sshd's AllowTcpForwarding/PermitOpen, or the key's options in authorized_keys)",
    paramiko.common.OPEN_FAILED_CONNECT_FAILED: "connect failed (nothing listens there, as seen from the VPS)",
    paramiko.common.OPEN_FAILED_UNKNOWN_CHANNEL_TYPE: "unknown channel type (the SSH server forwards no TCP)",
    paramiko.common.OPEN_FAILED_RESOURCE_SHORTAGE: "resource shortage (the SSH server has too many channels open)",
}


def refusal_reason(exc: paramiko.ChannelException) -> str:
    """Why the SSH server refused to open the channel, from the reason code it sent."""
    return _REFUSALS.get(exc.code, f"refused with code {exc.code} ({exc.text})")


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
    """Accepts local connections and pumps each through its own direct-tcpip channel. ``refusal``: why the
    VPS last refused to open one (the local connection is then closed: all its client sees)."""

    def __init__(self, ssh: SshConnection, target: ProdEndpoint) -> None:
        self.ssh = ssh
        self.target = target
        self.refusal: str | None = None
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
            except (paramiko.SSHException, SshError, OSError) as exc:
                self.refusal = self._refusal(exc)  # before the client sees its connection close
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, channel), daemon=True).start()

    def _refusal(self, exc: Exception) -> str:
        if isinstance(exc, SshError):  # the SSH connection is gone
            return str(exc)
        vps = f"{self.ssh.settings.host}:{self.ssh.settings.port}"
        if isinstance(exc, paramiko.ChannelException):
            return f"the VPS {vps} refused to open a tunnel to {self.target}: {refusal_reason(exc)}"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).rstrip(".")
        return f"could not open a tunnel to {self.target} through the VPS {vps}: {reason or type(exc).__name__}"

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
        self.prod_url = reveal(settings.prod_url) or ""
        self.url, self.container, docker_port = split_docker_url(self.prod_url)
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
                try:
                    conn = connect(local, what="prod", shown=shown, redactor=self.redactor, autocommit=True,
                                   **prod_session_params(local, self.settings.prod_idle_timeout_s,
                                                       self.settings.wait_s))
                except SyncError:
                    if forwarder.refusal is None:
                        raise
                    raise SshError(forwarder.refusal) from None  # what psycopg only saw as its socket closing
                try:
                    yield PsycopgSession(conn, self.name)
                finally:
                    conn.close()
            finally:
                forwarder.close()
