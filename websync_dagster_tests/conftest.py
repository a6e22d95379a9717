"""Real PostgreSQL servers for the tests: one dev and one prod server per session, fresh databases per test.
A second prod server runs PostgreSQL 15 (Debian's, prod's major version) for the tests that use ``sync_env15``.

The sample data is written once into template databases; each test gets its own copies
(``CREATE DATABASE ... TEMPLATE``), so tests never see each other's writes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from websync_dagster.core.settings import Settings, load_settings
from websync_dagster.demo.postgres import EmbeddedPostgres, server_bin_dir
from websync_dagster.demo.sample_data import SampleFacts, populate
from websync_dagster.demo.sample_schema import schema_ddl
from websync_dagster_tests.sshd import SshServer, make_traversable, start_sshd_or_skip

DEV_PASSWORD = "dev-Secret-7f3a"
PROD_PASSWORD = "prod-Secret-91c2"
_counter = itertools.count()

# Raises on anything but INSERT into the synced tables and on DDL outside temp schemas: a sync that
# tried to UPDATE, DELETE, TRUNCATE or ALTER prod would fail loudly.
PROD_GUARD = """
CREATE FUNCTION websync_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'websync guard: % on % is forbidden', TG_OP, TG_TABLE_NAME; END $$;
CREATE FUNCTION websync_ddl_guard() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE obj record;
BEGIN
  FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    IF obj.schema_name IS NULL OR obj.schema_name NOT LIKE 'pg_temp%' THEN
      RAISE EXCEPTION 'websync guard: DDL % on %', obj.command_tag, obj.object_identity;
    END IF;
  END LOOP;
END $$;
"""
GUARD_TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")


def arm_prod_guard(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PROD_GUARD)
        for table in GUARD_TABLES:
            conn.execute(
                f"CREATE TRIGGER websync_guard_rows BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION websync_guard()"
            )
            conn.execute(
                f"CREATE TRIGGER websync_guard_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION websync_guard()"
            )
        conn.execute("CREATE EVENT TRIGGER websync_ddl_guard ON ddl_command_end EXECUTE FUNCTION websync_ddl_guard()")


# pgvector where the server has none (Debian 12 ships no postgresql-15-pgvector): a `vector` type taking
# pgvector's text form ('[1,2,3]', parsed and kept as JSON by core's json I/O functions) and a dimension
# typmod printed as `vector(768)` (varchar's typmod functions), so that the catalog reads the same type
# names. The input function cannot check the dimensions; _check_vector_dimensions adds a CHECK instead.
VECTOR_STAND_IN = """
CREATE TYPE vector;
CREATE FUNCTION vector_in(cstring, oid, integer) RETURNS vector LANGUAGE internal IMMUTABLE STRICT AS 'json_in';
CREATE FUNCTION vector_out(vector) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'json_out';
CREATE FUNCTION vector_typmod_in(cstring[]) RETURNS integer LANGUAGE internal IMMUTABLE STRICT
    AS 'varchartypmodin';
CREATE FUNCTION vector_typmod_out(integer) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT
    AS 'varchartypmodout';
CREATE TYPE vector (INPUT = vector_in, OUTPUT = vector_out, TYPMOD_IN = vector_typmod_in,
    TYPMOD_OUT = vector_typmod_out, INTERNALLENGTH = VARIABLE, STORAGE = extended);
"""
_CREATE_VECTOR = "CREATE EXTENSION IF NOT EXISTS vector;"


def has_pgvector(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is not None


def _create_prod_schema(conn: psycopg.Connection) -> None:
    """The prod sample schema, with VECTOR_STAND_IN in place of pgvector when the server lacks it."""
    ddl = schema_ddl("prod")
    if has_pgvector(conn):
        conn.execute(ddl)
        return
    assert _CREATE_VECTOR in ddl, "the prod sample schema no longer creates pgvector: update VECTOR_STAND_IN"
    conn.execute(ddl.replace(_CREATE_VECTOR, VECTOR_STAND_IN))
    _check_vector_dimensions(conn)


def _check_vector_dimensions(conn: psycopg.Connection) -> None:
    """A CHECK on each stand-in ``vector(N)`` column, named like pgvector's error ("expected N dimensions"),
    so that a row of other dimensions is refused (class 23 rather than pgvector's 22) naming N."""
    columns = conn.execute(
        "SELECT c.relname, a.attname, a.atttypmod - 4 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE a.atttypid = 'vector'::regtype AND a.atttypmod > 4 AND c.relkind = 'r' AND NOT a.attisdropped "
        "AND c.relnamespace = current_schema()::regnamespace"
    ).fetchall()
    for table, column, dims in columns:
        check = "ALTER TABLE {t} ADD CONSTRAINT {name} CHECK ({c} IS NULL OR json_array_length({c}::text::json) = {n})"
        conn.execute(sql.SQL(check).format(
            t=sql.Identifier(table), name=sql.Identifier(f"{table}_{column}_expected_{dims}_dimensions"),
            c=sql.Identifier(column), n=sql.Literal(dims),
        ))


def fill_templates(dev_url: str, prod_url: str) -> SampleFacts:
    """Sample schemas and data into two empty databases, then the prod guard on the prod one."""
    with psycopg.connect(dev_url) as d, psycopg.connect(prod_url) as p:
        d.execute(schema_ddl("dev"))
        _create_prod_schema(p)
        facts = populate(d, p)
    arm_prod_guard(prod_url)
    return facts


#: fixtures that start real servers or processes: a test using any of them is in the real-server suite
SERVER_FIXTURES = {"servers", "sync_env", "servers15", "sync_env15", "vps", "prod_via", "sshd"}


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background of a non-interactive shell (``nohup make test &``) inherits SIGINT
    ignored, and so would every process a test starts and then interrupts (Ctrl-C tests, ``dg dev``, the demo's
    UI), which then never exits: SIGINT gets Python's own handler here, which the children's exec resets to the
    default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the real-server tests ``servers``; the others are the fast layer (``make test-fast``)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("servers"):
            item.add_marker(pytest.mark.servers)


@dataclass
class Servers:
    dev: EmbeddedPostgres
    prod: EmbeddedPostgres
    facts: SampleFacts


@dataclass
class SyncEnv:
    """A fresh dev/prod database pair and the environment a sync needs to reach them."""

    dev_url: str
    prod_url: str
    facts: SampleFacts
    export_dir: Path
    dagster_home: Path
    prod_server: EmbeddedPostgres
    env: dict[str, str] = field(default_factory=dict)

    def settings(self, **extra: str) -> Settings:
        return load_settings({**self.env, **extra}, env_file=None)

    def dev(self) -> psycopg.Connection:
        return psycopg.connect(self.dev_url, autocommit=True)

    def prod(self) -> psycopg.Connection:
        return psycopg.connect(self.prod_url, autocommit=True)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("pg")
    dev = EmbeddedPostgres(base / "dev", password=DEV_PASSWORD).start()
    prod = EmbeddedPostgres(base / "prod", password=PROD_PASSWORD).start()
    facts = fill_templates(dev.create_database("tpl"), prod.create_database("tpl"))
    yield Servers(dev, prod, facts)
    dev.stop()
    prod.stop()


@pytest.fixture(scope="session")
def servers15(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The session's dev server and a PostgreSQL 15 prod server whose ``tpl`` is the same as ``servers``'s prod's
    (skipped where /usr/lib/postgresql/15 is missing: ``make test`` installs it, .ci/install-postgres.sh)."""
    try:
        server_bin_dir(15)
    except ValueError as exc:
        pytest.skip(str(exc))
    prod = EmbeddedPostgres(tmp_path_factory.mktemp("pg15") / "prod", password=PROD_PASSWORD, version=15).start()
    # populate() writes dev and prod together (and is deterministic): its dev copy goes to a scratch database
    scratch = f"tpl15_dev_{os.getpid()}"
    facts = fill_templates(servers.dev.create_database(scratch), prod.create_database("tpl"))
    with psycopg.connect(servers.dev.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(scratch)))
    assert facts == servers.facts, "the sample data must be the same on both prod servers"
    yield Servers(servers.dev, prod, facts)
    prod.stop()


def fresh_database(server: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE tpl')
    return server.url(name)


@pytest.fixture
def sync_env(servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SyncEnv:
    return make_sync_env(servers, tmp_path, monkeypatch)


@pytest.fixture
def sync_env15(servers15: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SyncEnv:
    """``sync_env`` whose prod database is on the PostgreSQL 15 server (direct transport only: the test VPS
    reaches ``servers``'s prod)."""
    return make_sync_env(servers15, tmp_path, monkeypatch)


def make_sync_env(servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SyncEnv:
    """Fresh copies of dev's and prod's ``tpl`` and the environment (set in the test's) that reaches them."""
    n = next(_counter)
    dev_url = fresh_database(servers.dev, f"dev_{os.getpid()}_{n}")
    prod_url = fresh_database(servers.prod, f"prod_{os.getpid()}_{n}")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        "WEBSYNC_DEV_URL": dev_url,
        "WEBSYNC_PROD_URL": prod_url,
        "WEBSYNC_EXPORT_DIR": str(tmp_path / "exports"),
        "DAGSTER_HOME": str(dagster_home),
    }
    for name in [k for k in os.environ if k.startswith(("WEBSYNC_", "VPS_"))]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return SyncEnv(dev_url, prod_url, servers.facts, tmp_path / "exports", dagster_home, servers.prod, env)


TRANSPORTS = ["direct", "ssh_tunnel", "ssh_psql"]
CONTAINER = "moncabinet-postgres"
FAKE_VPS = Path(__file__).resolve().parent / "fake_vps"


@dataclass
class Vps:
    """A real sshd on 127.0.0.1 standing in for the VPS, with `docker` and `psql` on its PATH."""

    sshd: SshServer
    bin_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "VPS_HOST": self.sshd.host,
            "VPS_PORT": str(self.sshd.port),
            "VPS_USER": self.sshd.user,
            "VPS_KEY_FILE": str(self.sshd.key_file),
            "VPS_KNOWN_HOSTS": str(self.sshd.known_hosts),
            **extra,
        }


@pytest.fixture(scope="session")
def vps(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vps]:
    work = tmp_path_factory.mktemp("vps")
    bin_dir = work / "bin"
    (bin_dir / "containers").mkdir(parents=True)
    shutil.copy(FAKE_VPS / "docker", bin_dir / "docker")
    (bin_dir / "docker").chmod(0o755)
    container_env = bin_dir / "containers" / f"{CONTAINER}.env"
    container_env.write_text(
        f"CONTAINER_IP=127.0.0.1\nPGHOST=127.0.0.1\nPGPORT={servers.prod.port}\nPGUSER=postgres\n"
        f"PGPASSWORD={PROD_PASSWORD}\nPATH={servers.prod.bin_dir}:/usr/local/bin:/usr/bin:/bin\n"
    )
    container_env.chmod(0o644)
    make_traversable(bin_dir / "containers")
    make_traversable(servers.prod.bin_dir)
    sshd = start_sshd_or_skip(work / "sshd", env_path=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin")
    yield Vps(sshd, bin_dir)
    sshd.stop()


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture(params=TRANSPORTS)
def prod_via(request: pytest.FixtureRequest):
    """Settings that reach the test's prod database through one transport (the conformance suite)."""
    transport = request.param

    def settings_for(sync_env: SyncEnv) -> Settings:
        if transport == "direct":
            return sync_env.settings()
        vps: Vps = request.getfixturevalue("vps")
        database = _database(sync_env.prod_url)
        if transport == "ssh_tunnel":
            url = f"postgresql://postgres:{PROD_PASSWORD}@docker:{CONTAINER}:{sync_env.prod_server.port}/{database}"
            return sync_env.settings(**vps.env(WEBSYNC_PROD_URL=url))
        command = f"docker exec -i {CONTAINER} psql -U postgres -d {database}"
        return sync_env.settings(**vps.env(WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL=command))

    settings_for.transport = transport  # type: ignore[attr-defined]
    return settings_for
