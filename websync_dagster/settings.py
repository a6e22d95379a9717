"""Configuration from the environment (a ``.env`` file works too); no Dagster here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from websync_dagster.sync.errors import ConfigError
from websync_dagster.sync.redact import Redactor, command_secrets, safe_url
from websync_dagster.sync.tables import parse_tables


@dataclass(frozen=True)
class SshSettings:
    host: str
    port: int = 22
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_sha256: str | None = None


@dataclass(frozen=True)
class ReindexSettings:
    url: str
    method: str = "POST"
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    dev_url: str = field(repr=False)
    prod_url: str | None = field(default=None, repr=False)
    ssh: SshSettings | None = None
    prod_psql: str | None = None
    export_dir: Path = Path("exports")
    tables: tuple[str, ...] = ()
    reindex: ReindexSettings | None = None

    @property
    def transport_name(self) -> str:
        if self.prod_psql:
            return "ssh_psql"
        return "ssh_tunnel" if self.ssh else "direct"

    def redactor(self) -> Redactor:
        secrets: list[str | None] = []
        for url in (self.dev_url, self.prod_url):
            if url:
                secrets.append(urlsplit(url).password)
        if self.ssh:
            secrets += [self.ssh.password, self.ssh.key_passphrase]
        if self.reindex:
            secrets.append(self.reindex.token)
        secrets += command_secrets(self.prod_psql)
        return Redactor(secrets)

    def describe(self) -> dict[str, str]:
        """What a run is pointed at, safe to show."""
        where = {"dev": safe_url(self.dev_url), "transport": self.transport_name}
        if self.prod_url:
            where["prod"] = safe_url(self.prod_url)
        if self.ssh:
            where["ssh"] = f"{self.ssh.user or ''}@{self.ssh.host}:{self.ssh.port}"
        if self.prod_psql:
            where["prod_psql"] = self.redactor()(self.prod_psql)
        return where


def _read_env(env: Mapping[str, str] | None, env_file: str | Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if env is None else env)
    return values


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not (parts.hostname or parts.path):
        raise ConfigError(f"{name} is not a postgresql:// URL: {safe_url(url)}")


def load_settings(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Settings from the environment (which wins) and ``env_file``; bad input is one clear line."""
    values = _read_env(env, env_file)

    def get(name: str, default: str | None = None) -> str | None:
        value = values.get(name, "").strip()
        return value or default

    dev_url = get("WEBSYNC_DEV_URL")
    if not dev_url:
        raise ConfigError("WEBSYNC_DEV_URL is not set: the dev database URL is required")
    _check_url("WEBSYNC_DEV_URL", dev_url)
    prod_url = get("WEBSYNC_PROD_URL")
    prod_psql = get("WEBSYNC_PROD_PSQL")
    if prod_url:
        _check_url("WEBSYNC_PROD_URL", prod_url)
    ssh = None
    if host := get("VPS_HOST"):
        port_text = get("VPS_PORT", "22") or "22"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"VPS_PORT must be a TCP port number, not {port_text!r}")
        ssh = SshSettings(
            host=host,
            port=int(port_text),
            user=get("VPS_USER"),
            password=get("VPS_PASSWORD"),
            key_file=get("VPS_KEY_FILE"),
            key_passphrase=get("VPS_KEY_PASSPHRASE"),
            known_hosts=get("VPS_KNOWN_HOSTS", "~/.ssh/known_hosts") or "~/.ssh/known_hosts",
            host_key_sha256=get("VPS_HOST_KEY_SHA256"),
        )
    if prod_psql and not ssh:
        raise ConfigError("WEBSYNC_PROD_PSQL is set but VPS_HOST is not: the psql command runs on the VPS over SSH")
    if not prod_url and not prod_psql:
        raise ConfigError("WEBSYNC_PROD_URL is not set (or WEBSYNC_PROD_PSQL with VPS_HOST): where is prod?")
    reindex = None
    if reindex_url := get("WEBSYNC_REINDEX_URL"):
        reindex = ReindexSettings(reindex_url, (get("WEBSYNC_REINDEX_METHOD", "POST") or "POST").upper(),
                                  get("WEBSYNC_REINDEX_TOKEN"))
    return Settings(
        dev_url=dev_url,
        prod_url=prod_url,
        ssh=ssh,
        prod_psql=prod_psql,
        export_dir=Path(get("WEBSYNC_EXPORT_DIR", "exports") or "exports"),
        tables=tuple(parse_tables(get("WEBSYNC_TABLES"))),
        reindex=reindex,
    )
