"""known_hosts read the way OpenSSH reads it (``sshd(8)`` SSH_KNOWN_HOSTS FILE FORMAT, ``hostfile.c``).

Pure: text in, verdict out, no server and no paramiko. The rules that differ from paramiko's HostKeys:

* every line naming the host counts: one with the presented key accepts it, even after a line with an
  older key of the same type (``ssh-keyscan >> known_hosts`` leaves both);
* ``@revoked`` refuses its key for the hosts it names, whatever other lines say;
* ``@cert-authority`` lines (host certificates, not supported here) and malformed lines are skipped;
* host fields: hashed ``|1|salt|hash``, comma lists, ``[host]:port``, wildcards ``*`` and ``?``, and
  ``!pattern`` (a line whose negated pattern matches the host does not apply to it), case-insensitive.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass, field

REVOKED = "@revoked"
CERT_AUTHORITY = "@cert-authority"
_HASH_MAGIC = "|1|"


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH looks up: ``host`` on port 22, else ``[host]:port`` (lower case)."""
    host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"


def blob_fingerprint(blob: bytes) -> str:
    """``SHA256:<base64>`` of a public key blob, as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def blob_key_type(blob: bytes) -> str:
    """The key type written at the start of a public key blob (``ssh-ed25519``, ``ssh-rsa``...)."""
    if len(blob) < 4:
        raise ValueError("key blob too short")
    (size,) = struct.unpack(">I", blob[:4])
    if size == 0 or len(blob) < 4 + size:
        raise ValueError("key blob truncated")
    return blob[4 : 4 + size].decode("ascii")


def _key_family(key_type: str) -> str:
    """Types OpenSSH compares as one (``sshkey_type_plain``): every ECDSA curve is one type."""
    return "ecdsa" if key_type.startswith("ecdsa-sha2-") else key_type


def _wildcard(pattern: str) -> re.Pattern[str]:
    """OpenSSH's ``match_pattern``: ``*`` any run, ``?`` one character, everything else literal."""
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _hash_parts(field_text: str) -> tuple[bytes, bytes]:
    """Salt and digest of a hashed host field ``|1|base64(salt)|base64(HMAC-SHA1(salt, name))``."""
    salt_text, _, digest_text = field_text[len(_HASH_MAGIC):].partition("|")
    try:
        return base64.b64decode(salt_text, validate=True), base64.b64decode(digest_text, validate=True)
    except binascii.Error:
        raise ValueError("bad base64 in the hashed host") from None


def _hashed_matches(field_text: str, name: str) -> bool:
    salt, digest = _hash_parts(field_text)
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


def host_field_matches(field_text: str, name: str) -> bool:
    """Whether a known_hosts host field applies to ``name`` (see ``known_hosts_name``)."""
    if field_text.startswith(_HASH_MAGIC):
        return _hashed_matches(field_text, name)
    positive = False
    for pattern in field_text.lower().split(","):
        negated = pattern.startswith("!")
        if _wildcard(pattern[1:] if negated else pattern).fullmatch(name):
            if negated:
                return False
            positive = True
    return positive


@dataclass(frozen=True)
class HostKeyLine:
    """One usable line of a known_hosts file."""

    lineno: int
    marker: str | None  # None, REVOKED or CERT_AUTHORITY
    hosts: str
    key_type: str
    blob: bytes = field(repr=False)

    def applies_to(self, name: str) -> bool:
        return host_field_matches(self.hosts, name)


@dataclass(frozen=True)
class KnownHosts:
    """The usable lines of a file, and a note per line skipped as malformed."""

    source: str
    lines: tuple[HostKeyLine, ...]
    skipped: tuple[str, ...] = ()


def _parse_line(text: str, lineno: int) -> HostKeyLine:
    """One non-blank, non-comment line; ``ValueError`` says why it is malformed."""
    fields = text.split()
    marker = fields[0] if fields[0].startswith("@") else None
    if marker is not None:
        if marker not in (REVOKED, CERT_AUTHORITY):
            raise ValueError(f"unknown marker {marker}")
        fields = fields[1:]
    if len(fields) < 3:
        raise ValueError("expected: [marker] hosts key-type base64-key [comment]")
    hosts, key_type, key_text = fields[:3]
    if hosts.startswith("|") and not hosts.startswith(_HASH_MAGIC):
        raise ValueError("unknown hashed host format")
    if hosts.startswith(_HASH_MAGIC):
        _hash_parts(hosts)
    try:
        blob = base64.b64decode(key_text, validate=True)
    except binascii.Error:
        raise ValueError("bad base64 in the key") from None
    try:
        blob_type = blob_key_type(blob)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a public key") from None
    if blob_type != key_type:
        raise ValueError(f"key type {key_type} but the key is {blob_type}")
    return HostKeyLine(lineno, marker, hosts, key_type, blob)


def parse_known_hosts(text: str, source: str = "known_hosts") -> KnownHosts:
    """Every usable line of a known_hosts file; malformed lines are skipped, each with a note."""
    lines: list[HostKeyLine] = []
    skipped: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            lines.append(_parse_line(stripped, lineno))
        except ValueError as exc:
            skipped.append(f"{source}:{lineno}: line skipped ({exc})")
    return KnownHosts(source, tuple(lines), tuple(skipped))


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    CHANGED = "changed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class HostKeyCheck:
    """The verdict on a presented key; ``line`` is the line that decided it (for CHANGED: the first
    line holding another key of the same type); ``notes`` name the lines skipped for this host."""

    verdict: Verdict
    line: HostKeyLine | None = None
    notes: tuple[str, ...] = ()


def check_host_key(known: KnownHosts, name: str, blob: bytes) -> HostKeyCheck:
    """OpenSSH's verdict on key ``blob`` presented by host ``name`` (see ``known_hosts_name``)."""
    mine = [line for line in known.lines if line.applies_to(name)]
    notes = tuple(
        f"{known.source}:{line.lineno}: {CERT_AUTHORITY} line skipped (host certificates are not supported)"
        for line in mine if line.marker == CERT_AUTHORITY
    )
    for line in mine:
        if line.marker == REVOKED and line.blob == blob:
            return HostKeyCheck(Verdict.REVOKED, line, notes)
    family = _key_family(blob_key_type(blob))
    same_type = [line for line in mine if line.marker is None and _key_family(line.key_type) == family]
    for line in same_type:
        if line.blob == blob:
            return HostKeyCheck(Verdict.ACCEPTED, line, notes)
    if same_type:
        return HostKeyCheck(Verdict.CHANGED, same_type[0], notes)
    return HostKeyCheck(Verdict.UNKNOWN, None, notes)
