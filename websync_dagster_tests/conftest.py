"""Real PostgreSQL servers for the tests: one dev and one prod server per session, fresh databases per test.

The sample data is written once into template databases; each test gets its own copies
(``CREATE DATABASE ... TEMPLATE``), so tests never see each other's writes.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from websync_dagster.core.settings import Settings, load_settings
from websync_dagster.demo.postgres import EmbeddedPostgres
from websync_dagster.demo.sample_data import SampleFacts, create_schemas, populate
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


#: fixtures that start real servers or processes: a test using any of them is in the real-server suite
SERVER_FIXTURES = {"servers", "sync_env", "vps", "prod_via", "sshd"}


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
    for server in (dev, prod):
        server.create_database("tpl")
    with psycopg.connect(dev.url("tpl")) as d, psycopg.connect(prod.url("tpl")) as p:
        create_schemas(d, p)
        facts = populate(d, p)
    arm_prod_guard(prod.url("tpl"))
    yield Servers(dev, prod, facts)
    dev.stop()
    prod.stop()


def fresh_database(server: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE tpl')
    return server.url(name)


@pytest.fixture
def sync_env(servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SyncEnv:
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
