"""The Dagster instance websync runs on: DAGSTER_HOME (default ./.dagster_home), with the project's
dagster.yaml, or dagster.postgres.yaml (dagster-postgres storage) when DAGSTER_PG_URL is set."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = ".dagster_home"
MARKER = "websync"  # dagster.yaml files that mention it are ours to refresh; others are left alone


def instance_yaml(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    name = "dagster.postgres.yaml" if env.get("DAGSTER_PG_URL") else "dagster.yaml"
    shipped = PROJECT / name
    if shipped.exists():
        return shipped.read_text()
    return "# websync\ntelemetry:\n  enabled: false\n"


def storage_url(url: str) -> str:
    """dagster-postgres needs the psycopg2 driver (its NOTIFY statements use client-side parameters):
    a plain ``postgresql://`` URL is given the ``+psycopg2`` driver."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg2://" + url[len(plain):]
    return url


def with_event_log_dir(text: str, home: Path) -> str:
    """The instance yaml with the event log's directory written out (``<home>/history/runs``), so that
    the instance opens the same way with or without DAGSTER_HOME in the environment."""
    config = yaml.safe_load(text) or {}
    storage = config.get("event_log_storage")
    if not storage or "config" in storage:
        return text
    storage["config"] = {"base_dir": str(home / "history" / "runs")}
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    return header + yaml.safe_dump(config, sort_keys=False)


def prepare_dagster_home(home: str | Path | None = None) -> Path:
    """Create DAGSTER_HOME with websync's instance settings (unless the user wrote their own) and export it."""
    if os.environ.get("DAGSTER_PG_URL"):
        os.environ["DAGSTER_PG_URL"] = storage_url(os.environ["DAGSTER_PG_URL"])
    path = Path(home or os.environ.get("DAGSTER_HOME") or Path.cwd() / DEFAULT_HOME).absolute()
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists() or MARKER in config.read_text():
        config.write_text(with_event_log_dir(instance_yaml(), path))
    os.environ["DAGSTER_HOME"] = str(path)
    return path
