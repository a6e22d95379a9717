"""The Dagster instance websync runs on: DAGSTER_HOME (default ./.dagster_home), with the project's
dagster.yaml, or dagster.postgres.yaml (dagster-postgres storage) when DAGSTER_PG_URL is set, prepared and opened
by one websync process at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from dagster import DagsterInstance

#: the instance settings websync writes into DAGSTER_HOME (shipped with the package)
INSTANCE_CONFIG = Path(__file__).resolve().parent / "instance_config"
DEFAULT_HOME = ".dagster_home"
MARKER = "websync"  # dagster.yaml files that mention it are ours to refresh; others are left alone
LOCK_FILE = ".websync.lock"


def instance_yaml(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    name = "dagster.postgres.yaml" if env.get("DAGSTER_PG_URL") else "dagster.yaml"
    return (INSTANCE_CONFIG / name).read_text()


def storage_url(url: str) -> str:
    """dagster-postgres needs the psycopg2 driver (its NOTIFY statements use client-side parameters):
    a plain ``postgresql://`` URL is given the ``+psycopg2`` driver."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg2://" + url[len(plain):]
    return url


_FROM_ENVIRONMENT = object()


def prepare_dagster_home(home: str | Path | None = None, pg_url: str | None | object = _FROM_ENVIRONMENT) -> Path:
    """Create the instance's home with websync's instance settings (unless the user wrote their own): ``home``, else
    ``./.dagster_home``; with ``pg_url`` (DAGSTER_PG_URL) its storage is that Postgres database. The CLI passes
    both, as its settings loaded them; a caller without settings (the Makefile, the demo, a test) passes neither,
    and DAGSTER_HOME and DAGSTER_PG_URL are read from the environment."""
    if pg_url is _FROM_ENVIRONMENT:
        home = home or os.environ.get("DAGSTER_HOME")
        pg_url = os.environ.get("DAGSTER_PG_URL")
    if isinstance(pg_url, str) and pg_url:
        # dagster.postgres.yaml names the URL (``env: DAGSTER_PG_URL``) rather than holding it, so that its
        # password is never written to disk: Dagster reads it from the environment when the instance opens, and
        # nowhere else (the instance's config is a file). Hence this one write, with the driver it needs.
        os.environ["DAGSTER_PG_URL"] = storage_url(pg_url)
    path = Path(home or Path.cwd() / DEFAULT_HOME).absolute()
    path.mkdir(parents=True, exist_ok=True)
    with home_lock(path):
        _write_config(path, postgres=bool(pg_url))
    return path


def _write_config(path: Path, *, postgres: bool) -> None:
    config = path / "dagster.yaml"
    text = instance_yaml({"DAGSTER_PG_URL": "set"} if postgres else {})
    if config.exists() and (MARKER not in config.read_text() or config.read_text() == text):
        return
    partial = path / f".dagster.yaml.{os.getpid()}"
    partial.write_text(text)
    partial.replace(config)  # never a half-written file for another process to read


@contextlib.contextmanager
def home_lock(path: Path) -> Iterator[None]:
    """Serialises websync processes setting up the same DAGSTER_HOME: Dagster's SQLite storage creates
    its tables when first opened, and two processes doing it at once fail ('table runs already exists')."""
    with open(path / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_instance(home: str | Path | None = None,
                  pg_url: str | None | object = _FROM_ENVIRONMENT) -> tuple[DagsterInstance, Path]:
    """The instance's home prepared (``prepare_dagster_home``) and its instance opened from there (DAGSTER_HOME is
    not written: the instance is handed to what uses it), its storage schemas created by one process at a time."""
    path = prepare_dagster_home(home, pg_url)
    with home_lock(path):
        instance = DagsterInstance.from_config(str(path))
        instance.get_runs(limit=1)  # run storage, then the event log index (concurrency slots live there)
        instance.event_log_storage.get_concurrency_keys()
    return instance, path

