"""ssh_psql with one psql per session when the VPS's decompressor fails on a script (a broken or incompatible
zstd): the transaction says so in one line naming it, not "exit status 0" (psql, fed nothing, ends as if all
went well). A real sshd whose PATH has such a zstd first; prod behind it is real."""

from __future__ import annotations

import pytest
from psycopg import sql

from websync_dagster.transport.base import Query
from websync_dagster.transport.psql import SshPsqlTransport
from websync_dagster.transport.psql_errors import PsqlError
from websync_dagster_tests.conftest import CONTAINER, Vps
from websync_dagster_tests.sshd import start_sshd_or_skip

#: answers the probe (it is on the PATH), then fails on the first frame it is given, after reading a little of it
BROKEN_ZSTD = '#!/bin/sh\nhead -c 4 >/dev/null\necho "zstd: /*stdin*\\\\: unsupported format" >&2\nexit 1\n'


def test_a_decompressor_that_fails_on_the_vps_is_said_by_name(sync_env, vps, tmp_path):
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    (broken / "zstd").write_text(BROKEN_ZSTD)
    (broken / "zstd").chmod(0o755)
    tmp_path.chmod(0o755)
    sshd = start_sshd_or_skip(tmp_path / "sshd", env_path=f"{broken}:{vps.bin_dir}:/usr/local/bin:/usr/bin:/bin")
    try:
        database = sync_env.prod_url.rsplit("/", 1)[1]
        settings = sync_env.settings(**Vps(sshd, vps.bin_dir).env(
            WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL=f"docker exec -i {CONTAINER} psql -U postgres -d {database}"))
        with pytest.raises(PsqlError) as failed, SshPsqlTransport(settings).session() as session:
            session.run_transaction([Query("one", sql.SQL("SELECT 1 AS one"))])  # (psql's first script is its settings)
        message = str(failed.value)
        assert "zstd -dcq" in message and "failed" in message, message
        assert "exit status 0" not in message, message
    finally:
        sshd.stop()
