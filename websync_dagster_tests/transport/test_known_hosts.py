"""known_hosts read as OpenSSH reads it: the parser alone (no server), then a real sshd behind files
that paramiko's HostKeys misread (two keys of one type for a host, @revoked, @cert-authority)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import struct

import pytest

from websync_dagster.core.errors import SyncError
from websync_dagster.engine.run import run_status
from websync_dagster.transport.known_hosts import (
    Verdict,
    blob_fingerprint,
    check_host_key,
    host_field_matches,
    known_hosts_name,
    parse_known_hosts,
)
from websync_dagster_tests.conftest import SyncEnv, Vps
from websync_dagster_tests.transport.test_ssh import _tunnel_env


def _blob(key_type: str, seed: str) -> bytes:
    """A public key blob: the type then key material (only equality matters to known_hosts)."""
    parts = [key_type.encode(), hashlib.sha256(seed.encode()).digest()]
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _line(hosts: str, blob: bytes, marker: str = "") -> str:
    key_type = blob[4:4 + struct.unpack(">I", blob[:4])[0]].decode()
    return f"{marker} {hosts} {key_type} {base64.b64encode(blob).decode()} comment".strip()


def _hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


OLD = _blob("ssh-ed25519", "old")
NEW = _blob("ssh-ed25519", "new")
RSA = _blob("ssh-rsa", "rsa")
HOST = "[vps.example]:2222"


def _verdict(lines: list[str], name: str = HOST, blob: bytes = NEW) -> tuple[Verdict, int | None]:
    check = check_host_key(parse_known_hosts("\n".join(lines) + "\n"), name, blob)
    return check.verdict, check.line.lineno if check.line else None


def test_the_name_looked_up_is_host_on_port_22_else_bracketed():
    assert known_hosts_name("VPS.Example", 22) == "vps.example"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_any_line_with_the_key_accepts_it_even_after_an_older_key_of_the_same_type():
    assert _verdict([_line(HOST, OLD), _line(HOST, NEW)]) == (Verdict.ACCEPTED, 2)
    assert _verdict([_line(HOST, NEW), _line(HOST, OLD)]) == (Verdict.ACCEPTED, 1)


def test_another_key_of_the_same_type_is_changed_and_other_types_or_hosts_are_unknown():
    assert _verdict([_line("other.example", NEW), _line(HOST, OLD)]) == (Verdict.CHANGED, 2)
    assert _verdict([_line(HOST, RSA)]) == (Verdict.UNKNOWN, None)
    assert _verdict([_line("[vps.example]:22", NEW), _line("vps.example", NEW)]) == (Verdict.UNKNOWN, None)
    assert _verdict([]) == (Verdict.UNKNOWN, None)
    nistp256, nistp384 = _blob("ecdsa-sha2-nistp256", "a"), _blob("ecdsa-sha2-nistp384", "b")
    assert _verdict([_line(HOST, nistp256)], blob=nistp384) == (Verdict.CHANGED, 1)  # one type for OpenSSH


def test_revoked_refuses_its_key_whatever_other_lines_say():
    assert _verdict([_line(HOST, NEW), _line(HOST, NEW, "@revoked")]) == (Verdict.REVOKED, 2)
    assert _verdict([_line("*", NEW, "@revoked"), _line(HOST, NEW)]) == (Verdict.REVOKED, 1)
    assert _verdict([_line(HOST, OLD, "@revoked"), _line(HOST, NEW)]) == (Verdict.ACCEPTED, 2)
    assert _verdict([_line("other.example", NEW, "@revoked"), _line(HOST, NEW)]) == (Verdict.ACCEPTED, 2)


def test_cert_authority_lines_are_skipped_with_a_note():
    known = parse_known_hosts(_line("*.example,[vps.example]:*", NEW, "@cert-authority") + "\n", "kh")
    check = check_host_key(known, HOST, NEW)
    assert check.verdict is Verdict.UNKNOWN
    assert check.notes == ("kh:1: @cert-authority line skipped (host certificates are not supported)",)
    assert check_host_key(known, "elsewhere.org", NEW).notes == ()


@pytest.mark.parametrize(("field", "name", "expected"), [
    ("vps.example,10.0.0.1", "10.0.0.1", True),
    ("VPS.Example", "vps.example", True),
    ("[vps.example]:2222", "[vps.example]:2222", True),
    ("[vps.example]:2222", "vps.example", False),
    ("[vps.example]:*", "[vps.example]:2222", True),
    ("*.example", "vps.example", True),
    ("*", "[vps.example]:2222", True),
    ("vps.exampl?", "vps.example", True),
    ("vps.exampl?", "vps.exampl", False),
    ("[vps]example", "vexample", False),  # brackets are literal, not a character class
    ("*.example,!vps.example", "vps.example", False),
    ("!vps.example,*.example", "www.example", True),
    ("!other.example", "vps.example", False),  # only negated patterns: never a match
    ("*.example", "example", False),
])
def test_host_patterns(field: str, name: str, expected: bool):
    assert host_field_matches(field, name) is expected


def test_hashed_entries_match_only_their_exact_name():
    assert host_field_matches(_hashed(HOST), HOST)
    assert not host_field_matches(_hashed(HOST), "vps.example")
    assert _verdict([_line(_hashed(HOST), OLD), _line(_hashed(HOST), NEW)]) == (Verdict.ACCEPTED, 2)
    assert _verdict([_line(_hashed("other.example"), OLD), _line(_hashed(HOST), OLD)]) == (Verdict.CHANGED, 2)


def test_malformed_lines_are_skipped_and_the_others_still_count():
    good = _line(HOST, NEW)
    key_text = base64.b64encode(NEW).decode()
    text = "\n".join([
        "# a comment",
        "",
        f"{HOST} ssh-ed25519",
        f"{HOST} ssh-ed25519 not*base64",
        f"{HOST} ssh-rsa {key_text}",
        f"@marker {HOST} ssh-ed25519 {key_text}",
        f"|1|bad*salt|x {HOST} ssh-ed25519 {key_text}",
        f"|2|abc|def ssh-ed25519 {key_text}",
        f"{HOST} ssh-ed25519 {base64.b64encode(b'junk').decode()}",
        f"   {good}   ",
    ])
    known = parse_known_hosts(text, "kh")
    assert [line.lineno for line in known.lines] == [10]
    assert [note.split(":")[1] for note in known.skipped] == ["3", "4", "5", "6", "7", "8", "9"]
    assert "kh:5: line skipped (key type ssh-rsa but the key is ssh-ed25519)" in known.skipped
    assert check_host_key(known, HOST, NEW).verdict is Verdict.ACCEPTED


def test_fingerprint_is_what_ssh_keygen_prints(vps: Vps):
    key_line = vps.sshd.known_hosts.read_text().split()
    assert blob_fingerprint(base64.b64decode(key_line[2])) == vps.sshd.host_key_sha256


# --- a real sshd -------------------------------------------------------------------------------------------


def _key_fields(path: os.PathLike[str]) -> str:
    """``type base64`` of the one line in a known_hosts file written by the sshd fixture."""
    return " ".join(open(path).read().split()[1:3])


def _known_hosts(vps: Vps, tmp_path, lines: list[str]):
    path = tmp_path / "known_hosts"
    right, wrong = _key_fields(vps.sshd.known_hosts), _key_fields(vps.sshd.wrong_known_hosts)
    path.write_text("\n".join(line.format(host=f"[127.0.0.1]:{vps.sshd.port}", right=right, wrong=wrong)
                              for line in lines) + "\n")
    return path


def _status(sync_env: SyncEnv, vps: Vps, known_hosts) -> dict[str, int]:
    counts, _ = run_status(sync_env.settings(**_tunnel_env(sync_env, vps, VPS_KNOWN_HOSTS=str(known_hosts))))
    return counts


def _refused(sync_env: SyncEnv, vps: Vps, known_hosts) -> str:
    """Reaching prod is refused with one line, before authenticating (sshd saw no credential)."""
    log_before = vps.sshd.log()
    with pytest.raises(SyncError) as err:
        _status(sync_env, vps, known_hosts)
    new_log = vps.sshd.log()[len(log_before):]
    assert "Accepted" not in new_log and "Failed" not in new_log
    assert "\n" not in str(err.value)
    return str(err.value)


def test_old_and_new_lines_for_the_host_connect(sync_env: SyncEnv, vps: Vps, tmp_path):
    known_hosts = _known_hosts(vps, tmp_path, ["{host} {wrong}", "{host} {right}"])
    assert _status(sync_env, vps, known_hosts)["web_pages"] == sync_env.facts.prod_counts["web_pages"]


def test_a_revoked_key_is_refused_even_when_another_line_accepts_it(sync_env: SyncEnv, vps: Vps, tmp_path):
    known_hosts = _known_hosts(vps, tmp_path, ["{host} {right}", "@revoked * {right}"])
    message = _refused(sync_env, vps, known_hosts)
    assert message == (f"host key of 127.0.0.1:{vps.sshd.port} is REVOKED: presented ssh-ed25519 "
                       f"{vps.sshd.host_key_sha256} is marked @revoked in {known_hosts} line 2; "
                       f"refused before authenticating")


def test_a_cert_authority_line_is_skipped_with_a_note_and_another_line_connects(
        sync_env: SyncEnv, vps: Vps, tmp_path, caplog: pytest.LogCaptureFixture):
    known_hosts = _known_hosts(vps, tmp_path, ["@cert-authority * {wrong}", "{host} not-a-key", "{host} {right}"])
    with caplog.at_level(logging.WARNING, logger="websync_dagster.transport.ssh"):
        assert _status(sync_env, vps, known_hosts)["web_files"] == sync_env.facts.prod_counts["web_files"]
    assert f"{known_hosts}:1: @cert-authority line skipped (host certificates are not supported)" in caplog.messages


def test_a_changed_key_names_the_line_and_both_fingerprints(sync_env: SyncEnv, vps: Vps, tmp_path):
    known_hosts = _known_hosts(vps, tmp_path, ["other.example {right}", "{host} {wrong}"])
    message = _refused(sync_env, vps, known_hosts)
    wrong = blob_fingerprint(base64.b64decode(_key_fields(vps.sshd.wrong_known_hosts).split()[1]))
    assert message == (f"host key of 127.0.0.1:{vps.sshd.port} CHANGED: presented ssh-ed25519 "
                       f"{vps.sshd.host_key_sha256}, {known_hosts} line 2 has {wrong}; refused before authenticating")
