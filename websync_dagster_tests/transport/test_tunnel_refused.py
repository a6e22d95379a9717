"""ssh_tunnel: when the VPS refuses to open the tunnel's channel, the error says so, naming the VPS and the
host and port it was asked for, rather than psycopg's "server closed the connection unexpectedly".

Against the real test sshd: a port nothing listens on (the VPS's connect fails), and a key whose
authorized_keys entry forbids port forwarding (sshd refuses the channel: administratively prohibited).
"""

from __future__ import annotations

import socket
import subprocess

import pytest
from psycopg import sql

from websync_dagster.core.errors import SyncError
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.run import run_status
from websync_dagster_tests.conftest import PROD_PASSWORD, SyncEnv, Vps


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refusal(sync_env: SyncEnv, env: dict[str, str]) -> str:
    with pytest.raises(SyncError) as raised:
        run_status(sync_env.settings(**env))
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_port_nothing_listens_on_is_said_to_be_refused_by_the_vps(sync_env, vps: Vps):
    port = _closed_port()
    database = sync_env.prod_url.rsplit("/", 1)[1]
    env = vps.env(WEBSYNC_PROD_URL=f"postgresql://postgres:{PROD_PASSWORD}@127.0.0.1:{port}/{database}")
    assert _refusal(sync_env, env) == (
        f"the VPS 127.0.0.1:{vps.sshd.port} refused to open a tunnel to 127.0.0.1:{port}: connect failed "
        "(nothing listens there, as seen from the VPS)")


def test_an_sshd_that_forbids_forwarding_is_said_to_prohibit_it(sync_env, vps: Vps, tmp_path):
    key = tmp_path / "id_no_forwarding"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with open(vps.sshd.workdir / f"authorized_keys.{vps.sshd.user}", "a") as authorized:
        authorized.write("no-port-forwarding " + key.with_suffix(".pub").read_text())
    database = sync_env.prod_url.rsplit("/", 1)[1]
    target = f"127.0.0.1:{sync_env.prod_server.port}"
    env = vps.env(WEBSYNC_PROD_URL=f"postgresql://postgres:{PROD_PASSWORD}@{target}/{database}",
                  VPS_KEY_FILE=str(key))
    message = _refusal(sync_env, env)
    assert message == (f"the VPS 127.0.0.1:{vps.sshd.port} refused to open a tunnel to {target}: administratively "
                       "prohibited (sshd's AllowTcpForwarding/PermitOpen, or the key's options in authorized_keys)")
    assert PROD_PASSWORD not in message
    with SyncContext(sync_env.settings(**{**env, "VPS_KEY_FILE": str(vps.sshd.key_file)})) as ctx:
        assert ctx.prod.query(sql.SQL("SELECT 1 AS one")) == [{"one": 1}]  # a key allowed to forward: it opens
