"""SSH compression against a real OpenSSH server: websync's zlib keeps its history from one packet to the
next (fewer bytes on a slow uplink), OpenSSH inflates it, and what sshd compresses back is read intact."""

from __future__ import annotations

import random
import re

import pytest

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import SshSettings, load_settings
from websync_dagster.transport.psql import SshPsqlTransport
from websync_dagster.transport.ssh import SshConnection
from websync_dagster_tests.conftest import Vps

#: 8 MB made of one 16 kB random block repeated: every 128 kB SSH packet repeats it. A compressor that
#: forgets its history at each packet sends the block again in every packet (~1 MB in all); one that keeps
#: it sends the block once.
BLOCK = random.Random(12).randbytes(16 * 1024)
DATA = BLOCK * 512
LEVEL_ENV = "WEBSYNC_SSH_COMPRESSION_LEVEL"
SSH_TUNNEL_ENV = {"WEBSYNC_DEV_URL": "postgresql://localhost/dev", "WEBSYNC_PROD_URL": "postgresql://localhost/prod",
                  "VPS_HOST": "vps.example"}


def _settings(vps: Vps, **extra: object) -> SshSettings:
    s = vps.sshd
    return SshSettings(host=s.host, port=s.port, user=s.user, key_file=str(s.key_file),
                       known_hosts=str(s.known_hosts), **extra)  # type: ignore[arg-type]


def _echo(ssh: SshConnection, data: bytes) -> tuple[bytes, int, int]:
    """``data`` sent to `cat` on the VPS and read back: (what came back, bytes sent, bytes received)."""
    sent, received = ssh.wire_bytes
    result = ssh.run("cat", stdin=data)
    assert result.status == 0, result.stderr
    sent2, received2 = ssh.wire_bytes
    return result.stdout, sent2 - sent, received2 - received


def test_compression_keeps_its_history_across_packets_and_openssh_inflates_it(vps):
    ssh = SshConnection(_settings(vps)).connect()
    try:
        assert ssh.transport.local_compression == "zlib@openssh.com"
        assert ssh.transport.remote_compression == "zlib@openssh.com"
        back, sent, received = _echo(ssh, DATA)
    finally:
        ssh.close()
    assert back == DATA  # OpenSSH inflated every packet, and paramiko inflated what sshd compressed back
    assert sent < 200_000, f"{sent} bytes on the wire for {len(DATA)}: the history was reset between packets"
    assert received < 200_000  # OpenSSH keeps its history too


def test_level_zero_turns_ssh_compression_off(vps):
    ssh = SshConnection(_settings(vps, compression_level=0)).connect()
    try:
        assert ssh.transport.local_compression == "none"
        back, sent, _ = _echo(ssh, DATA)
    finally:
        ssh.close()
    assert back == DATA
    assert sent > len(DATA)


@pytest.mark.parametrize(("written", "level"), [(None, 6), ("1", 1), ("9", 9), ("0", 0), (" 4 ", 4)])
def test_the_level_is_read_from_websync_ssh_compression_level(written, level):
    env = dict(SSH_TUNNEL_ENV)
    if written is not None:
        env[LEVEL_ENV] = written
    settings = load_settings(env, env_file=None)
    assert settings.ssh is not None and settings.ssh.compression_level == level


@pytest.mark.parametrize("written", ["10", "-1", "fast", "6.5"])
def test_a_level_out_of_zlibs_range_is_one_clear_line(written):
    message = f"^{LEVEL_ENV} must be a zlib level from 0 to 9, not '{re.escape(written)}'$"
    with pytest.raises(ConfigError, match=message):
        load_settings({**SSH_TUNNEL_ENV, LEVEL_ENV: written}, env_file=None)


def test_ssh_psql_sends_its_zstd_stream_without_deflating_it_again_and_receives_compressed(vps):
    """ssh_psql's stream is zstd already: zlib over it costs ~2.3 s of CPU per 100 MB for no byte less.
    Its connection sends stored blocks, while sshd still compresses what comes back (prod's keys)."""
    env = vps.env(WEBSYNC_DEV_URL="postgresql://localhost/dev", WEBSYNC_PROD_PSQL="psql")
    transport = SshPsqlTransport(load_settings(env, env_file=None))
    with transport._connection() as ssh:
        assert ssh.transport.local_compression == "zlib@openssh.com"
        back, sent, received = _echo(ssh, DATA)
    assert back == DATA
    assert len(DATA) < sent < len(DATA) * 1.01
    assert received < 200_000
