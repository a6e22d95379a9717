"""Night faults on a real PostgreSQL 15 prod end as issue 16 says: one line naming the table and what
prod kept, the other tables land (or are said not loaded when they depend on it), exit 1, and the next
run completes. The lock, timeout, status, two-operator, SIGTERM and French-prod cases have their own
modules (engine/test_lock_waits.py, engine/test_session_timeouts.py, engine/test_status.py,
defs/test_slot_claim.py, test_interrupts.py, transport/test_psql_structure.py)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from websync_dagster.cli import main as websync_main
from websync_dagster_tests.helpers import count, table_snapshot

TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("websync: error:")]


def test_a_read_only_prod_fails_each_table_in_one_line_and_changes_nothing(sync_env15, capsys):
    with sync_env15.prod() as prod:
        before = {t: table_snapshot(prod, t) for t in TABLES}
        name = prod.execute("SELECT current_database()").fetchone()[0]
        prod.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')

    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 1

    lines = error_lines(capsys.readouterr().err)
    assert any(line.startswith("websync: error: web_sources, knowledge_base: load into prod failed: cannot execute "
                               "COPY FROM in a read-only transaction (SQLSTATE 25006)") for line in lines), lines
    assert all("Traceback" not in line for line in lines)
    with sync_env15.prod() as prod:
        prod.execute("SET default_transaction_read_only = off")
        prod.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    with sync_env15.prod() as prod:
        assert {t: table_snapshot(prod, t) for t in TABLES} == before
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A filesystem of ``size`` at ``path`` (tmpfs), to fill; skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_export_disk_fails_the_table_in_one_line_and_the_next_run_completes(sync_env15, capsys,
                                                                                    monkeypatch, tmp_path):
    facts = sync_env15.facts
    with sync_env15.dev() as dev:  # 4 MB of new pages, more than the disk holds
        template = dev.execute("SELECT id FROM web_pages ORDER BY url LIMIT 1").fetchone()[0]
        dev.execute(
            "INSERT INTO web_pages SELECT (jsonb_populate_record(NULL::web_pages, to_jsonb(s) || jsonb_build_object("
            "'id', gen_random_uuid(), 'url', 'https://big.example.tn/' || g, 'url_hash', md5('big' || g), "
            "'extracted_text', repeat(md5(g::text), 1250)))).* "
            "FROM web_pages AS s, generate_series(1, 100) AS g WHERE s.id = %s", [template])
    with small_disk(tmp_path / "full", "1m") as disk:
        monkeypatch.setenv("WEBSYNC_EXPORT_DIR", str(disk))
        code = websync_main(["sync", "--env-file", "/dev/null", "--quiet"])
        lines = error_lines(capsys.readouterr().err)
    assert code == 1
    pages = [line for line in lines if line.startswith("websync: error: web_pages:")]
    assert len(pages) == 1 and "No space left on device" in pages[0], lines
    assert "websync: error: web_files: not loaded: web_pages did not land in prod" in lines
    with sync_env15.prod() as prod:
        assert count(prod, "knowledge_base") > facts.prod_counts["knowledge_base"]  # it fitted, and landed
        pages_after_fault = count(prod, "web_pages")

    monkeypatch.setenv("WEBSYNC_EXPORT_DIR", str(tmp_path / "exports"))
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0
    capsys.readouterr()
    with sync_env15.prod() as prod:
        assert count(prod, "web_pages") > pages_after_fault
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet", "--json"]) == 0  # nothing left to send
    rows = json.loads(capsys.readouterr().out)
    assert {r["table"]: r["inserted"] for r in rows} == dict.fromkeys(TABLES, 0)


def test_devs_backend_killed_mid_export_is_said_and_the_same_run_completes(sync_env15, capsys):
    """Dev's backend exporting web_pages is ended by dev's admin (here while it waits for a lock dev's own
    migration holds): one line says the link to dev broke, what prod kept, and the retry; the same run then
    exports again and completes."""
    killed: list[int] = []

    def kill_devs_export(migration: psycopg.Connection) -> None:
        deadline = time.monotonic() + 60
        with psycopg.connect(sync_env15.dev_url, autocommit=True) as admin:
            while time.monotonic() < deadline and not killed:
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = "
                    "'Lock' AND application_name LIKE 'websync%%'").fetchone()
                if row:
                    admin.execute("SELECT pg_terminate_backend(%s)", [row[0]])
                    killed.append(row[0])
                time.sleep(0.05)
        migration.rollback()

    with psycopg.connect(sync_env15.dev_url) as migration:
        migration.execute("LOCK TABLE web_pages IN ACCESS EXCLUSIVE MODE")
        killer = threading.Thread(target=kill_devs_export, args=(migration,))
        killer.start()
        code = websync_main(["sync", "--env-file", "/dev/null"])
        killer.join()
    err = capsys.readouterr().err
    assert killed, "dev's backend exporting web_pages was seen and ended"
    assert code == 0, err
    retry = [line for line in err.splitlines() if "web_pages: the link to dev broke (terminating connection" in line]
    assert len(retry) == 1 and "terminating connection due to administrator command" in retry[0], err
    assert "(0 rows committed before stay); reconnecting in 1 s (retry 1 of 3)" in retry[0]
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet", "--json"]) == 0  # nothing left to send
    rows = json.loads(capsys.readouterr().out)
    assert {r["table"]: r["inserted"] for r in rows} == dict.fromkeys(TABLES, 0)
