"""Configuration from the environment (a ``.env`` file works too); no Dagster here."""

from __future__ import annotations

import math
import os
import re
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
    diff_interval_s: int = 600
    nightly_cron: str = "0 3 * * *"
    progress_every_s: float = 5.0
    diff_auto_sync: bool = False
    #: how long a run waits for another run to free the prod_sync slot before giving up
    wait_s: int = 600

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
    _check_url_ports(name, url)


def _check_url_ports(name: str, url: str) -> None:
    """Each host's port, if written, is a TCP port number. Host lists (``h1:5432,h2``), IPv6 literals and
    websync's ``docker:<container>`` host form are understood."""
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    for host in hosts.split(","):
        host = host.removeprefix("docker:")
        if host.startswith("["):  # an IPv6 literal: what follows it is "" or ":port"
            host = host.partition("]")[2]
        port = host.rpartition(":")[2] if ":" in host else ""
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"{name} has a port that is not a number (1-65535): {safe_url(url)}")


_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")
REINDEX_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: (name, lowest, highest, names in order from ``lowest``) of the five cron fields
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("weekday", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"^(?P<base>\*|[^-/]+(?:-[^-/]+)?)(?:/(?P<step>.*))?$")


def _whole_seconds(name: str, text: str, *, minimum: int) -> int:
    if not text.isdigit() or int(text) < minimum:
        what = "above 0" if minimum > 0 else "(0 or more)"
        raise ConfigError(f"{name} must be a whole number of seconds {what}, not {text!r}")
    return int(text)


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a number of seconds (0 or more), not {text!r}")
    return value


def _boolean(name: str, text: str) -> bool:
    word = text.lower()
    if word not in _TRUE_WORDS + _FALSE_WORDS:
        raise ConfigError(f"{name} must be one of {'/'.join(_TRUE_WORDS)} or {'/'.join(_FALSE_WORDS)}, not {text!r}")
    return word in _TRUE_WORDS


def _cron_value(name: str, cron: str, field_name: str, text: str, names: tuple[str, ...], lowest: int) -> int:
    if text.isdigit():
        return int(text)
    if text.lower() in names:
        return lowest + names.index(text.lower())
    raise ConfigError(f"{name}: {field_name} {text!r} is not a number or a name in {cron!r}")


def check_cron(name: str, cron: str) -> str:
    """A standard 5-field cron expression (numbers, names, ``*``, lists, ranges, steps), checked field
    by field so that the error names what is wrong; Dagster would refuse it only when the code loads."""
    fields = cron.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ConfigError(f"{name} must be a 5-field cron expression (minute hour day month weekday), not {cron!r}")
    for text, (field_name, lowest, highest, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            match = _CRON_ITEM.match(item)
            if not match:
                raise ConfigError(f"{name}: {field_name} {item!r} is not a cron field in {cron!r}")
            step = match["step"]
            if step is not None and not (step.isdigit() and int(step) > 0):
                raise ConfigError(f"{name}: {field_name} step {step!r} must be a number above 0 in {cron!r}")
            if match["base"] == "*":
                continue
            bounds = [_cron_value(name, cron, field_name, t, names, lowest) for t in match["base"].split("-")]
            for value in bounds:
                if not lowest <= value <= highest:
                    raise ConfigError(f"{name}: {field_name} {value} is out of range {lowest}-{highest} in {cron!r}")
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                raise ConfigError(f"{name}: {field_name} range {match['base']} runs backwards in {cron!r}")
    return cron


def _check_reindex_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"WEBSYNC_REINDEX_URL must be an http:// or https:// URL with a host, not {safe_url(url)!r}")
    _check_url_ports("WEBSYNC_REINDEX_URL", url)


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
        _check_reindex_url(reindex_url)
        method = (get("WEBSYNC_REINDEX_METHOD", "POST") or "POST").upper()
        if method not in REINDEX_METHODS:
            raise ConfigError(f"WEBSYNC_REINDEX_METHOD must be one of {', '.join(REINDEX_METHODS)}, "
                              f"not {get('WEBSYNC_REINDEX_METHOD')!r}")
        reindex = ReindexSettings(reindex_url, method, get("WEBSYNC_REINDEX_TOKEN"))
    return Settings(
        dev_url=dev_url,
        prod_url=prod_url,
        ssh=ssh,
        prod_psql=prod_psql,
        export_dir=Path(get("WEBSYNC_EXPORT_DIR", "exports") or "exports"),
        tables=_tables(get("WEBSYNC_TABLES"), values.get("WEBSYNC_TABLES", "")),
        reindex=reindex,
        diff_interval_s=_whole_seconds("WEBSYNC_DIFF_INTERVAL_S", get("WEBSYNC_DIFF_INTERVAL_S", "600") or "600",
                                       minimum=1),
        nightly_cron=check_cron("WEBSYNC_NIGHTLY_CRON", get("WEBSYNC_NIGHTLY_CRON", "0 3 * * *") or "0 3 * * *"),
        progress_every_s=_seconds("WEBSYNC_PROGRESS_EVERY_S", get("WEBSYNC_PROGRESS_EVERY_S", "5") or "5"),
        diff_auto_sync=_boolean("WEBSYNC_DIFF_AUTO_SYNC", get("WEBSYNC_DIFF_AUTO_SYNC", "no") or "no"),
        wait_s=_whole_seconds("WEBSYNC_WAIT_S", get("WEBSYNC_WAIT_S", "600") or "600", minimum=0),
    )


def _tables(value: str | None, written: str) -> tuple[str, ...]:
    """WEBSYNC_TABLES: unset means the four tables; set to only commas and spaces is a mistake, not
    'no table' (a run would sync nothing and succeed)."""
    if value and not value.replace(",", "").strip():
        raise ConfigError(f"WEBSYNC_TABLES names no table ({written!r}): leave it unset to sync all four")
    return tuple(parse_tables(value))
