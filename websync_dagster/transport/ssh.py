"""SSH connection to the prod host with paramiko: host keys verified, clear one-line errors.

Host keys are judged against ``known_hosts`` with OpenSSH's rules (``known_hosts.py``): no key is
loaded into paramiko, so every connection goes through ``_VerifyHostKey``. An unknown, changed or
revoked key is refused during the key exchange, before any credential or data is sent, and the message
shows the fingerprint the server presented. ``VPS_HOST_KEY_SHA256`` pins one key instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import socket
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import paramiko
from paramiko.compress import ZlibDecompressor

from websync_dagster.core.errors import SyncError
from websync_dagster.core.redact import Redactor
from websync_dagster.core.settings import Settings, SshSettings, reveal
from websync_dagster.transport.base import ProdTransport
from websync_dagster.transport.known_hosts import (
    HostKeyCheck,
    KnownHosts,
    Verdict,
    blob_fingerprint,
    check_host_key,
    known_hosts_name,
    parse_known_hosts,
)

CONNECT_TIMEOUT_S = 15
KEEPALIVE_S = 15
#: bigger windows and packets than paramiko's defaults (2 MB, 32 KB): fewer round trips and less
#: per-packet Python work on a bulk COPY stream (OpenSSH accepts packets up to 256 KB)
WINDOW_BYTES = 16 * 1024 * 1024
MAX_PACKET_BYTES = 128 * 1024
_log = logging.getLogger(__name__)


class SshError(SyncError):
    """The prod host cannot be reached or refused us."""


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:<base64>`` as ``ssh-keygen -l`` prints it."""
    return blob_fingerprint(key.asbytes())


def _read_known_hosts(path: str, host: str) -> KnownHosts:
    if not os.path.isfile(path):
        raise SshError(f"known_hosts file {path} does not exist: cannot verify {host}'s host key")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_known_hosts(f.read(), path)
    except OSError as exc:
        raise SshError(f"cannot read known_hosts file {path}: {exc.strerror or exc}") from None


class _VerifyHostKey(paramiko.MissingHostKeyPolicy):
    """Judges every host key (paramiko holds none): the pinned fingerprint when there is one, else
    ``known_hosts`` as OpenSSH reads it. Anything but an accepted key raises, before authentication."""

    def __init__(self, settings: SshSettings, known_hosts: str, known: KnownHosts | None) -> None:
        self.where = f"{settings.host}:{settings.port}"
        self.name = known_hosts_name(settings.host, settings.port)
        self.known_hosts = known_hosts
        self.known = known
        self.pin = settings.host_key_sha256

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        presented = f"{key.get_name()} {fingerprint(key)}"
        if self.known is None:  # VPS_HOST_KEY_SHA256 is set: the pin alone decides
            if fingerprint(key) == self.pin:
                return
            raise SshError(f"host key of {self.name} does not match VPS_HOST_KEY_SHA256: presented {presented}, "
                           f"pinned {self.pin}; refused before authenticating")
        for note in self.known.skipped:
            _log.debug(note)
        check = check_host_key(self.known, self.name, key.asbytes())
        for note in check.notes:
            _log.warning(note)
        if check.verdict is not Verdict.ACCEPTED:
            raise SshError(self._refusal(check, presented))

    def _refusal(self, check: HostKeyCheck, presented: str) -> str:
        line = check.line
        if check.verdict is Verdict.REVOKED and line is not None:
            return (f"host key of {self.where} is REVOKED: presented {presented} is marked @revoked in "
                    f"{self.known_hosts} line {line.lineno}; refused before authenticating")
        if check.verdict is Verdict.CHANGED and line is not None:
            return (f"host key of {self.where} CHANGED: presented {presented}, {self.known_hosts} line "
                    f"{line.lineno} has {blob_fingerprint(line.blob)}; refused before authenticating")
        return (f"host {self.name} is not in {self.known_hosts}: presented {presented}; refused before "
                f"authenticating (add it with ssh-keyscan after checking the fingerprint, or set VPS_HOST_KEY_SHA256)")


#: zlib methods of SSH compression (``zlib@openssh.com`` starts after authentication, ``zlib`` at once)
ZLIB_METHODS = ("zlib@openssh.com", "zlib")


class SyncFlushZlibCompressor:
    """SSH's zlib compression that keeps its history from one packet to the next.

    paramiko's ``ZlibCompressor`` ends each packet with ``Z_FULL_FLUSH``, which also empties the history:
    every packet (32 kB) is compressed as if it were the first, and CSV's repeats across packets are sent
    again. ``Z_SYNC_FLUSH`` ends each packet on a byte boundary as SSH requires and keeps the history
    (OpenSSH sends ``Z_PARTIAL_FLUSH``); the peer's inflate reads one stream either way.
    """

    def __init__(self, level: int) -> None:
        self.z = zlib.compressobj(level)

    def __call__(self, data: bytes) -> bytes:
        return self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)


class FastTransport(paramiko.Transport):
    """paramiko's Transport with larger windows for bulk transfers (compression: ``transport_class``)."""

    def __init__(self, sock: socket.socket, **kwargs: object) -> None:
        super().__init__(sock, default_window_size=WINDOW_BYTES, default_max_packet_size=MAX_PACKET_BYTES,
                         **kwargs)  # type: ignore[arg-type]


@functools.cache
def transport_class(level: int) -> type[FastTransport]:
    """A ``FastTransport`` whose zlib compression is ``SyncFlushZlibCompressor`` at ``level`` (0: stored).

    The one use of paramiko's private API, fenced here: the class attribute ``Transport._compression_info``
    (method name -> compressor and decompressor factories), read and overridden for the zlib methods.
    ``websync_dagster_tests/transport/test_paramiko_private.py`` fails if an upgrade changes it, before a
    sync would silently compress the old way or break.
    """
    table = dict(paramiko.Transport._compression_info)
    for name in ZLIB_METHODS:
        table[name] = (functools.partial(SyncFlushZlibCompressor, level), ZlibDecompressor)
    return type(f"FastTransportZlib{level}", (FastTransport,), {"_compression_info": table})


class CountingSocket(socket.socket):
    """A TCP socket that counts the bytes it moves: what really crosses the link, after SSH compression."""

    sent = 0
    received = 0

    def send(self, data, *args):  # type: ignore[no-untyped-def, override]
        n = super().send(data, *args)
        self.sent += n
        return n

    def sendall(self, data, *args):  # type: ignore[no-untyped-def, override]
        super().sendall(data, *args)
        self.sent += len(data)

    def recv(self, size, *args):  # type: ignore[no-untyped-def, override]
        data = super().recv(size, *args)
        self.received += len(data)
        return data


def _open_socket(host: str, port: int) -> CountingSocket:
    """Connect like socket.create_connection, into a CountingSocket."""
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = CountingSocket(family, kind, proto)
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"no address for {host}")


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
        s = self.settings
        return f"{s.user or os.environ.get('USER', '')}@{s.host}:{s.port}"

    def connect(self) -> SshConnection:
        s = self.settings
        known_hosts = os.path.expanduser(s.known_hosts)
        known = None if s.host_key_sha256 else _read_known_hosts(known_hosts, s.host)
        self.client.set_missing_host_key_policy(_VerifyHostKey(s, known_hosts, known))
        use_password = bool(s.password)
        pkey = self._load_key() if s.key_file else None
        try:
            self.sock = _open_socket(s.host, s.port)
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
        self.last_wire_sent = 0
        self._ssh: SshConnection | None = None

    def wire_bytes_sent(self) -> int | None:
        return self._ssh.wire_bytes[0] if self._ssh else self.last_wire_sent

    def _via(self) -> str:
        s = self.ssh_settings
        return f"{self.name} via {s.user or ''}@{s.host}:{s.port}"

    @contextlib.contextmanager
    def _connection(self) -> Iterator[SshConnection]:
        """The SSH connection of one session, counted until it closes."""
        ssh = self._ssh = SshConnection(self.ssh_settings, self.redactor,
                                        sends_compressed=self.sends_compressed).connect()
        try:
            yield ssh
        finally:
            self.last_wire_sent = ssh.wire_bytes[0]
            self._ssh = None
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
