"""The host-key check of every SSH connection: a paramiko policy that judges each presented key (paramiko
holds none) against ``VPS_HOST_KEY_SHA256`` when it is set, else ``known_hosts`` read as OpenSSH reads it
(``known_hosts.py``). An unknown, changed or revoked key is refused during the key exchange, before any
credential or data is sent."""

from __future__ import annotations

import logging
import os

import paramiko

from websync_dagster.core.errors import SyncError
from websync_dagster.core.settings import SshSettings
from websync_dagster.transport.known_hosts import (
    HostKeyCheck,
    KnownHosts,
    Verdict,
    blob_fingerprint,
    check_host_key,
    known_hosts_name,
    parse_known_hosts,
)

_log = logging.getLogger(__name__)


class SshError(SyncError):
    """The prod host cannot be reached or refused us."""


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:<base64>`` as ``ssh-keygen -l`` prints it."""
    return blob_fingerprint(key.asbytes())


def read_known_hosts(path: str, host: str) -> KnownHosts:
    if not os.path.isfile(path):
        raise SshError(f"known_hosts file {path} does not exist: cannot verify {host}'s host key")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_known_hosts(f.read(), path)
    except OSError as exc:
        raise SshError(f"cannot read known_hosts file {path}: {exc.strerror or exc}") from None


class VerifyHostKey(paramiko.MissingHostKeyPolicy):
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
