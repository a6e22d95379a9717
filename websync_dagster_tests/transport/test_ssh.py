"""SSH transports against a real OpenSSH server: host keys, authentication, clear errors, cut connections,
and no secret anywhere in what a user sees."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from psycopg import sql

from websync_dagster.cli import main as websync_main
from websync_dagster.core.errors import SyncError, TableSyncError
from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.export_load import run_export, run_load
from websync_dagster.engine.load import file_chunks
from websync_dagster.engine.run import run_status
from websync_dagster.transport.base import CopyIn, Query, Statement
from websync_dagster.transport.psql import SshPsqlTransport
from websync_dagster_tests.conftest import CONTAINER, PROD_PASSWORD, Vps
from websync_dagster_tests.helpers import LoadInThread, count, sync_all, table_snapshot


def _tunnel_env(sync_env, vps: Vps, **extra: str) -> dict[str, str]:
    database = sync_env.prod_url.rsplit("/", 1)[1]
    url = f"postgresql://postgres:{PROD_PASSWORD}@docker:{CONTAINER}:{sync_env.prod_server.port}/{database}"
    return vps.env(WEBSYNC_PROD_URL=url, **extra)


def _psql_env(sync_env, vps: Vps, **extra: str) -> dict[str, str]:
    database = sync_env.prod_url.rsplit("/", 1)[1]
    command = f"docker exec -i {CONTAINER} psql -U postgres -d {database}"
    return vps.env(WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL=command, **extra)


def _refused(sync_env, env: dict[str, str]) -> str:
    """A whole sync is attempted and refused with one line; prod is left untouched."""
    settings = sync_env.settings(**env)
    with sync_env.prod() as prod:
        before = {t: table_snapshot(prod, t) for t in settings.tables}
    with pytest.raises(SyncError) as err:
        sync_all(settings)
    with sync_env.prod() as prod:
        assert {t: table_snapshot(prod, t) for t in settings.tables} == before
    message = str(err.value)
    assert "\n" not in message
    return message


def test_unknown_host_is_refused_before_authenticating(sync_env, vps, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    log_before = vps.sshd.log()
    message = _refused(sync_env, _tunnel_env(sync_env, vps, VPS_KNOWN_HOSTS=str(empty)))
    assert f"host [127.0.0.1]:{vps.sshd.port} is not in {empty}" in message
    assert vps.sshd.host_key_sha256 in message  # the fingerprint the server presented
    new_log = vps.sshd.log()[len(log_before):]
    assert "Accepted" not in new_log and "Failed" not in new_log  # no credential was offered


def test_changed_host_key_is_refused(sync_env, vps):
    message = _refused(sync_env, _tunnel_env(sync_env, vps, VPS_KNOWN_HOSTS=str(vps.sshd.wrong_known_hosts)))
    assert "CHANGED" in message and vps.sshd.host_key_sha256 in message


def test_hashed_known_hosts_and_pinned_fingerprint(sync_env, vps, tmp_path):
    counts, _ = run_status(sync_env.settings(**_tunnel_env(
        sync_env, vps, VPS_KNOWN_HOSTS=str(vps.sshd.hashed_known_hosts))))
    assert counts["web_pages"] == sync_env.facts.prod_counts["web_pages"]
    pinned = _tunnel_env(sync_env, vps, VPS_KNOWN_HOSTS=str(tmp_path / "none"),
                         VPS_HOST_KEY_SHA256=vps.sshd.host_key_sha256)
    counts, _ = run_status(sync_env.settings(**pinned))
    assert counts["web_sources"] == sync_env.facts.prod_counts["web_sources"]
    wrong_pin = {**pinned, "VPS_HOST_KEY_SHA256": "SHA256:" + "A" * 43}
    assert "does not match VPS_HOST_KEY_SHA256" in _refused(sync_env, wrong_pin)


def test_password_and_encrypted_key_authentication(sync_env, vps):
    password_env = _psql_env(sync_env, vps, VPS_USER=vps.sshd.password_user, VPS_PASSWORD=vps.sshd.password,
                             VPS_KEY_FILE="")
    counts, _ = run_status(sync_env.settings(**password_env))
    assert counts["knowledge_base"] == sync_env.facts.prod_counts["knowledge_base"]
    wrong = {**password_env, "VPS_PASSWORD": "Wrong-Password-123"}
    message = _refused(sync_env, wrong)
    assert message == f"SSH authentication failed for {vps.sshd.password_user}@127.0.0.1:{vps.sshd.port} using password"
    key_env = _tunnel_env(sync_env, vps, VPS_KEY_FILE=str(vps.sshd.encrypted_key_file),
                          VPS_KEY_PASSPHRASE=vps.sshd.key_passphrase or "")
    counts, _ = run_status(sync_env.settings(**key_env))
    assert counts["web_files"] == sync_env.facts.prod_counts["web_files"]
    no_passphrase = {**key_env, "VPS_KEY_PASSPHRASE": ""}
    assert "VPS_KEY_PASSPHRASE" in _refused(sync_env, no_passphrase)


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_rsa_and_ecdsa_keys(sync_env, vps, tmp_path, key_type):
    key = tmp_path / f"id_{key_type}"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(key)], check=True)
    authorized = vps.sshd.workdir / f"authorized_keys.{vps.sshd.user}"
    with open(authorized, "a") as f:
        f.write(key.with_suffix(".pub").read_text())
    counts, _ = run_status(sync_env.settings(**_tunnel_env(sync_env, vps, VPS_KEY_FILE=str(key))))
    assert counts["web_sources"] == sync_env.facts.prod_counts["web_sources"]


def test_unreachable_hosts_and_missing_remote_programs(sync_env, vps, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    message = _refused(sync_env, _tunnel_env(sync_env, vps, VPS_PORT=str(closed_port)))
    assert message == f"connection refused by 127.0.0.1:{closed_port} (no SSH server listening?)"
    message = _refused(sync_env, _tunnel_env(sync_env, vps, VPS_HOST="no-such-vps.invalid"))
    assert message == "cannot resolve VPS host 'no-such-vps.invalid' (DNS)"
    database = sync_env.prod_url.rsplit("/", 1)[1]
    message = _refused(sync_env, vps.env(WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL=f"psql-nowhere -d {database}"))
    assert message.startswith("remote command not found on the VPS: psql-nowhere")
    url = f"postgresql://postgres:{PROD_PASSWORD}@docker:no-such-container:5432/{database}"
    message = _refused(sync_env, vps.env(WEBSYNC_PROD_URL=url))
    assert message == "container 'no-such-container' not found on the VPS 127.0.0.1 (docker inspect)"
    message = _refused(sync_env, vps.env(WEBSYNC_PROD_URL="",
                                         WEBSYNC_PROD_PSQL="docker exec -i no-such-container psql"))
    assert "No such container: no-such-container" in message


def _big_delta(sync_env, rows: int = 3000) -> None:
    """~36 MB of new web_pages in dev, on a source prod has, in random hex that compresses only ~2x."""
    source = sync_env.facts.already_in_prod["web_sources"][0]
    with sync_env.dev() as dev:
        dev.execute(
            "INSERT INTO web_pages (id, web_source_id, url, url_hash, extracted_text, status) "
            "SELECT gen_random_uuid(), %s, 'https://big.example.tn/' || i, md5('big' || i), "
            "(SELECT string_agg(md5(random()::text || i || j), ' ') FROM generate_series(1, 360) AS j), 'crawled' "
            "FROM generate_series(1, %s) AS i",
            [source, rows],
        )


@pytest.mark.parametrize("transport", ["ssh_tunnel", "ssh_psql"])
def test_cut_connection_leaves_the_table_unchanged_and_the_next_run_completes(sync_env, vps, transport):
    _big_delta(sync_env)
    env = _tunnel_env(sync_env, vps) if transport == "ssh_tunnel" else _psql_env(sync_env, vps)
    settings = sync_env.settings(**env)
    with sync_env.prod() as prod:
        before = table_snapshot(prod, "web_pages")
    export = run_export(settings, "web_pages", scope="delta")
    assert export.bytes > 30_000_000
    loader = LoadInThread(settings, "web_pages", export)
    with sync_env.prod() as prod:
        deadline = time.time() + 60
        copied = 0
        while time.time() < deadline and not copied:
            row = prod.execute("SELECT coalesce(max(bytes_processed), 0) FROM pg_stat_progress_copy").fetchone()
            copied = row[0]
            time.sleep(0.02)
        assert copied, "the COPY never started"
        assert vps.sshd.kill_sessions() >= 1
    loader.join(120)
    assert loader.errors and isinstance(loader.errors[0], TableSyncError), loader.errors
    assert str(loader.errors[0]).startswith("web_pages: ")
    with sync_env.prod() as prod:
        deadline = time.time() + 30  # the server notices the dead connection and rolls back
        while time.time() < deadline and prod.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state <> 'idle'").fetchone()[0]:
            time.sleep(0.1)
        assert table_snapshot(prod, "web_pages") == before
    outcome = run_load(settings, "web_pages", run_export(settings, "web_pages", scope="delta"),
                       declared_deps=DECLARED_DEPS)
    with sync_env.prod() as prod:
        assert count(prod, "web_pages") == len(before) + outcome.result.inserted
        assert outcome.result.inserted >= 3000
        dupes = prod.execute("SELECT count(*) FROM (SELECT web_source_id, url_hash FROM web_pages "
                             "GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
        assert dupes == 0


def test_no_secret_reaches_output_metadata_exports_or_errors(sync_env, vps, capsys, caplog, monkeypatch):
    secrets = [PROD_PASSWORD, vps.sshd.password, "dev-Secret-7f3a"]
    env = _psql_env(sync_env, vps, VPS_USER=vps.sshd.password_user, VPS_PASSWORD=vps.sshd.password,
                    VPS_KEY_FILE="")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WEBSYNC_PROD_URL")
    assert websync_main(["sync", "--env-file", "/dev/null"]) == 0
    assert websync_main(["status", "--env-file", "/dev/null"]) == 0
    monkeypatch.setenv("VPS_PASSWORD", "Not-The-Password-42")
    assert websync_main(["diff", "--env-file", "/dev/null"]) == 1
    secrets.append("Not-The-Password-42")
    captured = capsys.readouterr()
    seen = [captured.out, captured.err, caplog.text]
    seen += [p.read_text(encoding="utf-8", errors="replace") for p in sync_env.export_dir.rglob("*") if p.is_file()]
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    for run in instance.get_runs():
        seen.append(json.dumps([str(e) for e in instance.all_logs(run.run_id)]))
    assert "SSH authentication failed" in captured.err
    text = "\n".join(seen)
    for secret in secrets:
        assert secret not in text


def test_ssh_psql_ships_compressed_and_keeps_backslash_dot_lines(sync_env, vps):
    settings = sync_env.settings(**_psql_env(sync_env, vps))
    export = sync_all(settings)["web_pages"].export
    transport = SshPsqlTransport(settings)
    with transport.session() as session:
        results = session.run_transaction([
            Statement(sql.SQL("CREATE TEMP TABLE s ({}) ON COMMIT DROP").format(
                sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in export.columns))),
            CopyIn("copied", sql.Identifier("s"), tuple(export.columns), file_chunks(Path(export.path))),
            Query("dots", sql.SQL("SELECT count(*) AS n, count(*) FILTER (WHERE extracted_text LIKE {}) AS dots FROM s")
                  .format(sql.Literal("%" + chr(10) + "\\\\." + chr(10) + "%"))),
        ])
        assert results == {"copied": [{"rows": export.rows}], "dots": [{"n": export.rows, "dots": 1}]}
        assert session.sent_bytes < 0.5 * session.raw_bytes, (session.sent_bytes, session.raw_bytes)
