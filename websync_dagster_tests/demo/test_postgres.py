"""Real tests of EmbeddedPostgres: real servers, real TCP connections, no mocks."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from websync_dagster.demo.postgres import EmbeddedPostgres

pytestmark = [pytest.mark.timeout(120), pytest.mark.servers]


def _password() -> str:
    # unique (to search for it in logs / ps) and full of characters that need url-quoting
    return f"Pw-{secrets.token_hex(8)}@:/ %?#'\""


def _can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _all_command_lines() -> str:
    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    proc = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                proc.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return ps + "\n".join(proc)


def _postgres_environments() -> str:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if b"postgres" in (entry / "cmdline").read_bytes():
                    out.append((entry / "environ").read_bytes().decode(errors="replace"))
    return "\n".join(out)


@pytest.fixture(scope="module")
def two_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedPostgres, EmbeddedPostgres]]:
    base = tmp_path_factory.mktemp("two")
    servers = (
        EmbeddedPostgres(base / "dev", password=_password()),
        EmbeddedPostgres(base / "prod", password=_password()),
    )
    with ThreadPoolExecutor(2) as pool:  # start both at once
        list(pool.map(lambda s: s.start(), servers))
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_two_servers_listen_on_distinct_ports_with_vector(
    two_servers: tuple[EmbeddedPostgres, EmbeddedPostgres],
) -> None:
    dev, prod = two_servers
    assert dev.port != prod.port
    for i, server in enumerate(two_servers):
        url = server.url()
        assert url.startswith("postgresql://postgres:Pw-") and f"@127.0.0.1:{server.port}/postgres" in url
        with psycopg.connect(url) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            assert conn.execute("SELECT '[1,2,3]'::vector").fetchone() == ("[1,2,3]",)
            conn.execute(f"CREATE TABLE only_here_{i} (id int)")
            assert conn.execute("SELECT inet_server_port()").fetchone() == (server.port,)
    # the two clusters are independent
    with psycopg.connect(prod.url()) as conn:
        assert conn.execute("SELECT to_regclass('only_here_0')").fetchone() == (None,)


def test_unix_socket_is_available(two_servers: tuple[EmbeddedPostgres, EmbeddedPostgres]) -> None:
    for server in two_servers:
        assert (server.socket_dir / f".s.PGSQL.{server.port}").is_socket()
        with psycopg.connect(host=str(server.socket_dir), port=server.port, user="postgres", dbname="postgres") as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


def test_wrong_or_missing_password_is_refused(
    two_servers: tuple[EmbeddedPostgres, EmbeddedPostgres], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    dev, prod = two_servers
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"postgresql://postgres:wrong@127.0.0.1:{dev.port}/postgres", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dev.url(with_password=False), connect_timeout=5)
    # each server has its own password
    prod_password_on_dev = prod.url().replace(f":{prod.port}/", f":{dev.port}/")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(prod_password_on_dev, connect_timeout=5)


def test_url_format(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", password="a b@c/d:e%", port=15432)
    assert pg.url() == "postgresql://postgres:a%20b%40c%2Fd%3Ae%25@127.0.0.1:15432/postgres"
    assert pg.url("my db", with_password=False) == "postgresql://postgres@127.0.0.1:15432/my%20db"
    assert EmbeddedPostgres(tmp_path / "x", port=15433).url("d") == "postgresql://postgres@127.0.0.1:15433/d"
    assert "a b@c" not in repr(pg) and "a%20b" not in repr(pg)
    with pytest.raises(ValueError, match="PostgreSQL 3 is not available"):
        EmbeddedPostgres(tmp_path / "pg", version=3)  # neither bundled nor under /usr/lib/postgresql
    with pytest.raises(ValueError):
        EmbeddedPostgres(tmp_path / "pg", password="two\nlines")


def test_create_database(two_servers: tuple[EmbeddedPostgres, EmbeddedPostgres]) -> None:
    dev, _ = two_servers
    url = dev.create_database("web sync")
    assert url == dev.url("web sync")
    assert dev.create_database("web sync") == url  # idempotent
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("web sync",)


def test_kill_connections(two_servers: tuple[EmbeddedPostgres, EmbeddedPostgres]) -> None:
    _, prod = two_servers
    url = prod.create_database("doomed")
    victim = psycopg.connect(url)
    try:
        prod.kill_connections()
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
    finally:
        victim.close()
    with psycopg.connect(prod.url(), autocommit=True) as conn:
        conn.execute('DROP DATABASE "doomed"')


def test_password_not_in_log_nor_ps(two_servers: tuple[EmbeddedPostgres, EmbeddedPostgres]) -> None:
    dev, prod = two_servers
    passwords = [s._password for s in two_servers]
    assert all(passwords)
    # failed logins and regular sessions, kept open while we look at the process list
    for server in two_servers:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url(with_password=False) + "?password=nope", connect_timeout=5)
    with psycopg.connect(dev.url()), psycopg.connect(prod.url()):
        command_lines = _all_command_lines()
        environments = _postgres_environments()
    assert "postgres" in command_lines  # sanity: we did see the server processes
    for server, password in zip(two_servers, passwords, strict=True):
        log = (server.data_dir / "server.log").read_text()
        assert "password authentication failed" in log
        for text in (log, command_lines, environments):
            assert password not in text
            assert server.url().split("@")[0].split(":")[-1] not in text  # url-quoted form


def test_restart_keeps_data_and_url(tmp_path: Path) -> None:
    password = _password()
    data_dir = tmp_path / "cluster"
    t0 = time.monotonic()
    pg = EmbeddedPostgres(data_dir, password=password).start()
    fresh_s = time.monotonic() - t0
    url = pg.url()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE EXTENSION vector")
        conn.execute("CREATE TABLE t (id int, v vector(3))")
        conn.execute("INSERT INTO t VALUES (1, '[1,2,3]')")
    pg.stop()
    assert not _can_connect(url)
    pg.stop()  # stopping twice is fine

    t0 = time.monotonic()
    again = EmbeddedPostgres(data_dir, password=password).start()
    restart_s = time.monotonic() - t0
    try:
        assert again.url() == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT id, v::text FROM t").fetchall() == [(1, "[1,2,3]")]
    finally:
        again.stop()
    print(f"fresh start {fresh_s:.2f}s, restart {restart_s:.2f}s")
    assert fresh_s < 10 and restart_s < 5


def test_stop_then_connect_fails(tmp_path: Path) -> None:
    EmbeddedPostgres(tmp_path / "never").stop()  # never started, not even created: no error
    with EmbeddedPostgres(tmp_path / "pg", password=_password()) as pg:
        url = pg.url()
        assert _can_connect(url)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)
    assert not (pg.data_dir / "postmaster.pid").exists()


def test_start_is_idempotent_and_adopts_a_running_server(tmp_path: Path) -> None:
    password = _password()
    pg = EmbeddedPostgres(tmp_path / "pg", password=password).start()
    try:
        assert pg.start() is pg
        other = EmbeddedPostgres(tmp_path / "pg", password=password, port=_some_other_port(pg.port)).start()
        assert other.port == pg.port and other.url() == pg.url()
        other.stop()
        assert not _can_connect(pg.url())
    finally:
        pg.stop()


def _some_other_port(port: int) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        other = s.getsockname()[1]
    assert other != port
    return other


def test_recorded_port_taken_meanwhile_picks_another(tmp_path: Path) -> None:
    password = _password()
    pg = EmbeddedPostgres(tmp_path / "pg", password=password).start()
    old_port = pg.port
    with psycopg.connect(pg.url()) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    pg.stop()
    with socket.socket() as squatter:
        # the server's closed connections may leave the port in TIME_WAIT; a listener may still take it
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        again = EmbeddedPostgres(tmp_path / "pg", password=password)
        assert again.port == old_port  # recorded
        again.start()
        try:
            assert again.port != old_port
            assert json.loads((tmp_path / "pg" / "embedded_postgres.json").read_text())["port"] == again.port
            with psycopg.connect(again.url()) as conn:
                assert conn.execute("SELECT to_regclass('kept')::text").fetchone() == ("kept",)
        finally:
            again.stop()


def test_explicit_busy_port_fails_with_log_tail(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        pg = EmbeddedPostgres(tmp_path / "pg", password=_password(), port=port)
        with pytest.raises(RuntimeError, match="could not bind|Address already in use"):
            pg.start()
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


def test_without_password_is_trust(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as pg:
        assert pg.url() == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        with psycopg.connect(pg.url(), connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_password_changes_follow_the_constructor(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg", password="first-password"):
        pass
    with EmbeddedPostgres(tmp_path / "pg", password="second-password") as pg:
        assert _can_connect(pg.url())
        assert not _can_connect(pg.url().replace("second-password", "first-password"))
        assert "second-password" not in (pg.data_dir / "server.log").read_text()


def test_long_data_dir_uses_short_socket_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * 60) / ("e" * 60) / "pg"
    with EmbeddedPostgres(data_dir, password=_password()) as pg:
        assert pg.socket_dir != data_dir and len(str(pg.socket_dir)) < 40
        assert (pg.socket_dir / f".s.PGSQL.{pg.port}").is_socket()
        with psycopg.connect(host=str(pg.socket_dir), port=pg.port, user="postgres", dbname="postgres") as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        assert _can_connect(pg.url())
        socket_dir = pg.socket_dir
    assert not socket_dir.exists()


def test_version_18_with_vector(tmp_path: Path) -> None:
    with (
        EmbeddedPostgres(tmp_path / "pg18", password=_password(), version=18) as pg,
        psycopg.connect(pg.url()) as conn,
    ):
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")
        conn.execute("CREATE EXTENSION vector")
        assert conn.execute("SELECT '[1,2,3]'::vector").fetchone() == ("[1,2,3]",)
    with pytest.raises(RuntimeError, match="PostgreSQL 18 cluster"):
        EmbeddedPostgres(tmp_path / "pg18", version=16).start()


def test_running_as_root_uses_pgserver_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only relevant as root")
    import pwd

    with EmbeddedPostgres(tmp_path / "pg") as pg:
        owner = pwd.getpwuid(pg.data_dir.stat().st_uid).pw_name
        pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        assert owner == "pgserver"
        assert pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name == "pgserver"
        assert (pg.data_dir.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("ending", ["return normally", "raise an exception"])
def test_atexit_stops_servers_left_running(tmp_path: Path, ending: str) -> None:
    data_dir = tmp_path / "pg"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from websync_dagster.demo.postgres import EmbeddedPostgres\n"
        f"pg = EmbeddedPostgres(Path({str(data_dir)!r}), password='x').start()\n"
        "print(pg.port, flush=True)\n" + ("raise SystemExit('boom')\n" if ending == "raise an exception" else "")
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    port = int(result.stdout.split()[0])
    assert not (data_dir / "postmaster.pid").exists(), result.stderr
    assert not _can_connect(f"postgresql://postgres:x@127.0.0.1:{port}/postgres")


def test_survives_ancestor_modes_being_tightened(tmp_path: Path) -> None:
    """pytest resets /tmp/pytest-of-<user> to 0700 when another session starts; stop/start must cope."""
    if os.geteuid() != 0:
        pytest.skip("only relevant as root (the server runs as another user)")
    password = _password()
    pg = EmbeddedPostgres(tmp_path / "pg", password=password).start()
    try:
        tmp_path.chmod(0o700)
        pg.stop()
        assert not (pg.data_dir / "postmaster.pid").exists()
        tmp_path.chmod(0o700)
        pg.start()
        assert _can_connect(pg.url())
    finally:
        pg.stop()
