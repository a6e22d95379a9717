"""No secret anywhere a run leaves a trace: the real `websync sync` CLI in a subprocess, on every transport,
then every byte it printed and every file under DAGSTER_HOME and the export dir (SQLite databases included)
is searched for every secret of the configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from websync_dagster_tests.conftest import CONTAINER, DEV_PASSWORD, PROD_PASSWORD, SyncEnv, Vps

WEBSYNC = str(Path(sys.executable).parent / "websync")
CASES = ["direct", "ssh_tunnel", "ssh_psql_pgpassword", "ssh_psql_url"]


def _case_env(case: str, sync_env: SyncEnv, vps: Vps) -> tuple[dict[str, str], list[str]]:
    """The environment of one case and the secrets it holds (the dev password is in every case)."""
    if case == "direct":
        return {}, [PROD_PASSWORD]
    database = sync_env.prod_url.rsplit("/", 1)[1]
    port = sync_env.prod_server.port
    if case == "ssh_tunnel":
        url = f"postgresql://postgres:{PROD_PASSWORD}@docker:{CONTAINER}:{port}/{database}"
        env = vps.env(WEBSYNC_PROD_URL=url, VPS_KEY_FILE=str(vps.sshd.encrypted_key_file),
                      VPS_KEY_PASSPHRASE=vps.sshd.key_passphrase or "")
        return env, [PROD_PASSWORD, vps.sshd.key_passphrase or ""]
    if case == "ssh_psql_pgpassword":
        command = f"docker exec -i {CONTAINER} env PGPASSWORD={PROD_PASSWORD} psql -U postgres -d {database}"
    else:
        command = f"docker exec -i {CONTAINER} psql 'postgresql://postgres:{PROD_PASSWORD}@127.0.0.1:{port}/{database}'"
    env = vps.env(WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL=command, VPS_USER=vps.sshd.password_user,
                  VPS_PASSWORD=vps.sshd.password, VPS_KEY_FILE="")
    return env, [PROD_PASSWORD, vps.sshd.password]


def _leaks(secrets: list[str], output: bytes, roots: list[Path]) -> list[str]:
    """Where each secret was found: 'output' or a file path."""
    found = []
    for secret in secrets:
        needle = secret.encode()
        if needle in output:
            found.append(f"{secret[:4]}... in the CLI output")
        for root in roots:
            for path in root.rglob("*"):
                if path.is_file() and needle in path.read_bytes():
                    found.append(f"{secret[:4]}... in {path}")
    return found


@pytest.mark.parametrize("case", CASES)
def test_no_secret_in_output_run_storage_or_exports(sync_env: SyncEnv, vps: Vps, case: str):
    env, secrets = _case_env(case, sync_env, vps)
    secrets = [DEV_PASSWORD, *secrets]
    assert all(len(s) >= 8 for s in secrets)
    proc = subprocess.run([WEBSYNC, "sync", "--env-file", "/dev/null"], env={**os.environ, **sync_env.env, **env},
                          capture_output=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    first_line = proc.stderr.decode().splitlines()[0]
    assert first_line.startswith("websync: sync: dev=") and "transport=" in first_line
    if case.startswith("ssh_psql"):
        shown_command = first_line.split("prod_psql=", 1)[1]
        assert shown_command.startswith("docker exec -i") and "***" in shown_command
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    event = instance.get_latest_materialization_event(AssetKey(["web_pages", "prod_upserted"]))
    assert event is not None and event.asset_materialization is not None
    transport = event.asset_materialization.metadata["transport"].value
    assert isinstance(transport, str) and transport.startswith(case.removesuffix("_pgpassword").removesuffix("_url"))
    instance.dispose()
    leaks = _leaks(secrets, output, [sync_env.dagster_home, sync_env.export_dir])
    assert not leaks, leaks


@pytest.mark.parametrize(("command", "secrets"), [
    ("docker exec -i db env PGPASSWORD=s3cret-1 psql -U u", ["s3cret-1"]),
    ("env my_db_pass='two words' psql --password=opt-secret -W", ["two words", "opt-secret"]),
    ("psql 'postgresql://u:p%40ss-9@h/db?sslmode=require'", ["p%40ss-9", "p@ss-9"]),
    ('psql "host=h password=conn-pw user=u"', ["conn-pw"]),
    ("docker exec -e API_TOKEN=tok-123 -e APP_SECRET=sec-456 db psql --password", ["tok-123", "sec-456"]),
])
def test_secrets_inside_the_psql_command_are_found_and_hidden(command: str, secrets: list[str]):
    from websync_dagster.core.settings import load_settings

    settings = load_settings({"WEBSYNC_DEV_URL": "postgresql://d@h/d", "VPS_HOST": "vps.example",
                              "WEBSYNC_PROD_PSQL": command}, env_file=None)
    shown = settings.describe()["prod_psql"]
    assert "***" in shown and shown.split()[0] == command.split()[0]
    redact = settings.redactor()
    for secret in secrets:
        assert secret not in shown
        assert redact(f"psql: error near {secret}!") == "psql: error near ***!"
