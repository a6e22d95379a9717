"""Configuration from the environment (a ``.env`` file works too); no Dagster here."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.redact import Redactor, command_secrets, safe_url
from websync_dagster.core.tables import DEFAULT_TABLES
from websync_dagster.core.validate import (
    REINDEX_METHODS,
    boolean,
    check_cron,
    check_pg_url,
    check_reindex_url,
    seconds,
    tables_value,
    whole_number,
    whole_seconds,
)


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
    #: zlib level of SSH compression (0 = none): 6 fits a slow uplink, 1 a LAN where CPU counts more
    compression_level: int = 6


@dataclass(frozen=True)
class ReindexSettings:
    url: str
    method: str = "POST"
    token: str | None = field(default=None, repr=False)


NO_PROD = "WEBSYNC_PROD_URL is not set (or WEBSYNC_PROD_PSQL with VPS_HOST): where is prod?"


@dataclass(frozen=True)
class LocationOptions:
    """What shapes the code location itself, read when Dagster loads it (never at import): the tables of
    ``websync_job``, the nightly cron, the diff sensor's interval, the freshness expected of each prod load."""

    tables: tuple[str, ...] = DEFAULT_TABLES
    nightly_cron: str = "0 3 * * *"
    diff_interval_s: int = 600
    freshness_warn_h: float = 26.0
    freshness_fail_h: float = 50.0


@dataclass(frozen=True)
class Settings:
    dev_url: str = field(repr=False)
    prod_url: str | None = field(default=None, repr=False)
    ssh: SshSettings | None = None
    prod_psql: str | None = None
    export_dir: Path = Path("exports")
    tables: tuple[str, ...] = ()
    reindex: ReindexSettings | None = None
    diff_interval_s: int = 600
    nightly_cron: str = "0 3 * * *"
    progress_every_s: float = 5.0
    diff_auto_sync: bool = False
    #: how long a run waits for another run to free the prod_sync slot before giving up
    wait_s: int = 600
    #: prod ends a websync session whose transaction stays idle this long (client paused or gone)
    prod_idle_timeout_s: int = 60
    #: a table's rows are committed in units of about this many seconds of sending (None: one per table)
    commit_every_s: float | None = 4.0

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


def load_settings(
    env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env", *, require_prod: bool = True
) -> Settings:
    """Settings from the environment (which wins) and ``env_file``; bad input is one clear line.
    ``require_prod=False`` (the offline export) accepts settings that do not say where prod is: whatever
    then needs prod refuses in the same one line."""
    values = _read_env(env, env_file)

    def get(name: str, default: str | None = None) -> str | None:
        value = values.get(name, "").strip()
        return value or default

    dev_url = get("WEBSYNC_DEV_URL")
    if not dev_url:
        raise ConfigError("WEBSYNC_DEV_URL is not set: the dev database URL is required")
    check_pg_url("WEBSYNC_DEV_URL", dev_url)
    prod_url = get("WEBSYNC_PROD_URL")
    prod_psql = get("WEBSYNC_PROD_PSQL")
    if prod_url:
        check_pg_url("WEBSYNC_PROD_URL", prod_url)
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
            compression_level=whole_number("WEBSYNC_SSH_COMPRESSION_LEVEL",
                                           get("WEBSYNC_SSH_COMPRESSION_LEVEL", "6") or "6", 0, 9, "zlib level"),
        )
    if prod_psql and not ssh:
        raise ConfigError("WEBSYNC_PROD_PSQL is set but VPS_HOST is not: the psql command runs on the VPS over SSH")
    if not prod_url and not prod_psql and require_prod:
        raise ConfigError(NO_PROD)
    reindex = None
    if reindex_url := get("WEBSYNC_REINDEX_URL"):
        check_reindex_url(reindex_url)
        method = (get("WEBSYNC_REINDEX_METHOD", "POST") or "POST").upper()
        if method not in REINDEX_METHODS:
            raise ConfigError(f"WEBSYNC_REINDEX_METHOD must be one of {', '.join(REINDEX_METHODS)}, "
                              f"not {get('WEBSYNC_REINDEX_METHOD')!r}")
        reindex = ReindexSettings(reindex_url, method, get("WEBSYNC_REINDEX_TOKEN"))
    location = _location_options(get, values)
    return Settings(
        dev_url=dev_url,
        prod_url=prod_url,
        ssh=ssh,
        prod_psql=prod_psql,
        export_dir=Path(get("WEBSYNC_EXPORT_DIR", "exports") or "exports"),
        tables=location.tables,
        diff_interval_s=location.diff_interval_s,
        nightly_cron=location.nightly_cron,
        reindex=reindex,
        progress_every_s=seconds("WEBSYNC_PROGRESS_EVERY_S", get("WEBSYNC_PROGRESS_EVERY_S", "5") or "5"),
        diff_auto_sync=boolean("WEBSYNC_DIFF_AUTO_SYNC", get("WEBSYNC_DIFF_AUTO_SYNC", "no") or "no"),
        wait_s=whole_seconds("WEBSYNC_WAIT_S", get("WEBSYNC_WAIT_S", "600") or "600", minimum=0),
        prod_idle_timeout_s=whole_seconds("WEBSYNC_PROD_IDLE_TIMEOUT_S",
                                           get("WEBSYNC_PROD_IDLE_TIMEOUT_S", "60") or "60", minimum=1),
        commit_every_s=seconds("WEBSYNC_COMMIT_EVERY_S", get("WEBSYNC_COMMIT_EVERY_S", "4") or "4") or None,
    )


def load_location_options(
    env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> LocationOptions:
    """The code location's options from the environment (which wins) and ``env_file``; needs no database URL."""
    values = _read_env(env, env_file)
    return _location_options(lambda name, default=None: values.get(name, "").strip() or default, values)


def _location_options(get: Callable[..., str | None], values: Mapping[str, str]) -> LocationOptions:
    warn_h = seconds("WEBSYNC_FRESHNESS_WARN_H", get("WEBSYNC_FRESHNESS_WARN_H", "26") or "26", "hours")
    fail_h = seconds("WEBSYNC_FRESHNESS_FAIL_H", get("WEBSYNC_FRESHNESS_FAIL_H", "50") or "50", "hours")
    if not 0 < warn_h < fail_h:
        raise ConfigError(f"WEBSYNC_FRESHNESS_WARN_H ({warn_h:g}) must be above 0 and below "
                          f"WEBSYNC_FRESHNESS_FAIL_H ({fail_h:g})")
    return LocationOptions(
        tables=tables_value(get("WEBSYNC_TABLES"), values.get("WEBSYNC_TABLES", "")),
        nightly_cron=check_cron("WEBSYNC_NIGHTLY_CRON", get("WEBSYNC_NIGHTLY_CRON", "0 3 * * *") or "0 3 * * *"),
        diff_interval_s=whole_seconds("WEBSYNC_DIFF_INTERVAL_S", get("WEBSYNC_DIFF_INTERVAL_S", "600") or "600",
                                      minimum=1),
        freshness_warn_h=warn_h,
        freshness_fail_h=fail_h,
    )
