"""SSH connection to the prod host with paramiko: host keys verified, clear one-line errors.

Host keys are judged against ``known_hosts`` with OpenSSH's rules (``known_hosts.py``): no key is
loaded into paramiko, so every connection goes through ``host_key_policy.VerifyHostKey``. An unknown, changed or
revoked key is refused during the key exchange, before any credential or data is sent, and the message
shows the fingerprint the server presented. ``VPS_HOST_KEY_SHA256`` pins one key instead.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shlex
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import paramiko

from websync_dagster.core.redact import Redactor
from websync_dagster.core.settings import Settings, SshSettings, reveal
from websync_dagster.transport.base import ProdTransport
from websync_dagster.transport.host_key_policy import SshError, VerifyHostKey, read_known_hosts
from websync_dagster.transport.ssh_wire import CountingSocket, open_socket, transport_class

CONNECT_TIMEOUT_S = 15
KEEPALIVE_S = 15
_log = logging.getLogger(__name__)


@dataclass
class RemoteResult:
    status: int
    stdout: bytes
    stderr: bytes


class SshConnection:
    """An authenticated SSH connection to the VPS."""

    def __init__(self, settings: SshSettings, redactor: Redactor | None = None, *,
                 sends_compressed: bool = False) -> None:
        """``sends_compressed``: what goes up is compressed already (ssh_psql's zstd): SSH compression stays
        on for what comes down, and what goes up travels in zlib's stored blocks (no CPU spent on it)."""
        self.settings = settings
        self.sends_compressed = sends_compressed
        self.redactor = redactor or Redactor([reveal(settings.password), reveal(settings.key_passphrase)])
        self.client = paramiko.SSHClient()
        self.sock: CountingSocket | None = None

    @property
    def where(self) -> str:
        """``user@host:port``; without VPS_USER, the local login name, which paramiko then logs in as."""
        s = self.settings
        return f"{s.user or getpass.getuser()}@{s.host}:{s.port}"

    def connect(self) -> SshConnection:
        s = self.settings
        known_hosts = os.path.expanduser(s.known_hosts)
        known = None if s.host_key_sha256 else read_known_hosts(known_hosts, s.host)
        self.client.set_missing_host_key_policy(VerifyHostKey(s, known_hosts, known))
        use_password = bool(s.password)
        pkey = self._load_key() if s.key_file else None
        try:
            self.sock = open_socket(s.host, s.port, CONNECT_TIMEOUT_S)
            self.client.connect(
                s.host,
                port=s.port,
                sock=self.sock,
                username=s.user,
                password=reveal(s.password),
                pkey=pkey,
                allow_agent=not use_password and not s.key_file,
                look_for_keys=not use_password and not s.key_file,
                timeout=CONNECT_TIMEOUT_S,
                banner_timeout=CONNECT_TIMEOUT_S,
                auth_timeout=CONNECT_TIMEOUT_S,
                compress=s.compression_level > 0,
                transport_factory=transport_class(0 if self.sends_compressed else s.compression_level),
            )
        except SshError:
            self.client.close()
            raise
        except paramiko.AuthenticationException:
            self.client.close()
            how = "password" if use_password else "key " + (s.key_file or "(agent/~/.ssh)")
            raise SshError(f"SSH authentication failed for {self.where} using {how}") from None
        except socket.gaierror:
            self.client.close()
            raise SshError(f"cannot resolve VPS host {s.host!r} (DNS)") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            self.client.close()
            if all(isinstance(e, ConnectionRefusedError) for e in exc.errors.values()):
                raise SshError(f"connection refused by {s.host}:{s.port} (no SSH server listening?)") from None
            raise SshError(f"cannot connect to {s.host}:{s.port}: {exc.strerror or exc}") from None
        except ConnectionRefusedError:
            self.client.close()
            raise SshError(f"connection refused by {s.host}:{s.port} (no SSH server listening?)") from None
        except TimeoutError:
            self.client.close()
            raise SshError(f"timed out connecting to {s.host}:{s.port}") from None
        except (paramiko.SSHException, OSError) as exc:
            self.client.close()
            raise SshError(f"SSH connection to {s.host}:{s.port} failed: {self.redactor(str(exc))}") from None
        transport = self.client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_S)
        return self

    def _load_key(self) -> paramiko.PKey:
        """The private key of VPS_KEY_FILE (ed25519, ecdsa or rsa), decrypted with VPS_KEY_PASSPHRASE."""
        path = os.path.expanduser(self.settings.key_file or "")
        try:
            passphrase = reveal(self.settings.key_passphrase)
            return paramiko.PKey.from_path(path, password=passphrase.encode() if passphrase else None)
        except FileNotFoundError:
            raise SshError(f"VPS_KEY_FILE {path} does not exist") from None
        except paramiko.PasswordRequiredException:
            raise SshError(f"key {path} is encrypted: set VPS_KEY_PASSPHRASE") from None
        except TypeError as exc:  # cryptography's way of saying the key is encrypted
            if "password" in str(exc) and not self.settings.key_passphrase:
                raise SshError(f"key {path} is encrypted: set VPS_KEY_PASSPHRASE") from None
            raise SshError(f"cannot read key {path}: {type(exc).__name__}") from None
        except (paramiko.SSHException, ValueError, OSError) as exc:
            reason = self.redactor(str(exc)) or type(exc).__name__
            raise SshError(f"cannot read key {path} (wrong VPS_KEY_PASSPHRASE, or not a key): {reason}") from None

    @property
    def transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise SshError(f"SSH connection to {self.where} was lost")
        return transport

    def open_exec(self, command: str) -> paramiko.Channel:
        channel = self.transport.open_session(timeout=CONNECT_TIMEOUT_S)
        channel.exec_command(command)
        return channel

    def run(self, command: str, stdin: bytes = b"") -> RemoteResult:
        """Run a short command to completion."""
        channel = self.open_exec(command)
        try:
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except OSError:  # the command ended before reading its input (e.g. not found): its status says why
            pass
        stdout = channel.makefile("rb").read()
        stderr = channel.makefile_stderr("rb").read()
        status = channel.recv_exit_status()
        channel.close()
        return RemoteResult(status, stdout, stderr)

    def has_command(self, name: str) -> bool:
        return self.run(f"command -v {shlex.quote(name)}").status == 0

    @property
    def wire_bytes(self) -> tuple[int, int]:
        """(sent, received) on the TCP connection to the VPS so far."""
        return (self.sock.sent, self.sock.received) if self.sock else (0, 0)

    def close(self) -> None:
        self.client.close()


class SshTransport(ProdTransport):
    """What the SSH transports share: the settings, the connection of the open session, its byte count."""

    #: what this transport sends is compressed already (``SshConnection``'s ``sends_compressed``)
    sends_compressed = False

    def __init__(self, settings: Settings) -> None:
        assert settings.ssh is not None
        self.settings = settings
        self.ssh_settings: SshSettings = settings.ssh
        self.redactor = settings.redactor()
        #: bytes sent by the connections already closed, and the connections open now (a run's main prod session
        #: and the lock watcher's; a reconnect closes one and opens another)
        self._closed_sent = 0
        self._open: list[SshConnection] = []
        self._count_lock = threading.Lock()

    def wire_bytes_sent(self) -> int | None:
        """Bytes sent to the VPS by every connection of this transport so far: it only grows."""
        with self._count_lock:
            return self._closed_sent + sum(ssh.wire_bytes[0] for ssh in self._open)

    def _via(self) -> str:
        s = self.ssh_settings
        return f"{self.name} via {s.user or ''}@{s.host}:{s.port}"

    @contextlib.contextmanager
    def _connection(self) -> Iterator[SshConnection]:
        """The SSH connection of one session, counted until it closes."""
        ssh = SshConnection(self.ssh_settings, self.redactor, sends_compressed=self.sends_compressed).connect()
        with self._count_lock:
            self._open.append(ssh)
        try:
            yield ssh
        finally:
            with self._count_lock:
                self._open.remove(ssh)
                self._closed_sent += ssh.wire_bytes[0]
            ssh.close()


def remote_failure(command: str, result: RemoteResult, redactor: Redactor) -> str:
    """One line saying why a remote command failed."""
    words = shlex.split(command)
    program = redactor(words[0] if words else command)  # a `PGPASSWORD=... psql` command starts with a secret
    lines = redactor(result.stderr.decode("utf-8", "replace")).strip().splitlines()
    last = lines[-1].strip() if lines else f"exit status {result.status}"
    if result.status == 127 or last.endswith("not found"):
        return f"remote command not found on the VPS: {program} ({last})"
    return f"remote command {program} failed: {last}"
