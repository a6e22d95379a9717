"""Configuration, read once from the environment and a ``.env`` file (the environment wins) by pydantic-settings,
and validated as it is read: each bad value is refused with one line naming its variable (``ConfigError``).

``Settings`` is what a run uses, ``LocationOptions`` what shapes the code location; one field per variable, the
variable being its alias. Secrets are ``SecretStr`` (their repr is ``**********``): only the code that uses one
reads it (``reveal``). Nothing here reads the environment except ``load_settings`` and ``load_location_options``
(through ``core.settings_sources``, which says which source wins); no Dagster here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator as model_check
from pydantic_settings import NoDecode

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.redact import Redactor, command_secrets, safe_url
from websync_dagster.core.settings_sources import read_model
from websync_dagster.core.tables import DEFAULT_TABLES
from websync_dagster.core.validate import (
    Hours,
    Says,
    Seconds,
    Switch,
    TcpPort,
    WholeSeconds,
    WholeSecondsAbove0,
    ZlibLevel,
    check_cron,
    check_pg_url,
    check_reindex_method,
    check_reindex_url,
    one_line,
    tables_value,
    update_newer_value,
    variable,
)

NO_PROD = "WEBSYNC_PROD_URL is not set (or WEBSYNC_PROD_PSQL with VPS_HOST): where is prod?"
Tables = Annotated[tuple[str, ...], NoDecode]  # a comma list, not JSON


def reveal(secret: SecretStr | str | None) -> str | None:
    """The value of a secret, for the code that uses it (a connection, a header)."""
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


class SshSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    port: int = 22
    user: str | None = None
    password: SecretStr | None = None
    key_file: str | None = None
    key_passphrase: SecretStr | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_sha256: str | None = None
    #: zlib level of SSH compression (0 = none): 6 fits a slow uplink, 1 a LAN where CPU counts more
    compression_level: int = 6


class ReindexSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    method: str = "POST"
    token: SecretStr | None = None


class _Variables(BaseModel):
    """Fields read from environment variables (their aliases), or given by name (a run's config)."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True)

    @model_check(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """A variable set to nothing or spaces is unset, and the spaces around a value are not part of it;
        WEBSYNC_TABLES stays as written, for its message."""
        if not isinstance(data, dict):
            return data
        kept = {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return {k: v.strip() if isinstance(v, str) and k not in ("WEBSYNC_TABLES", "tables") else v
                for k, v in kept.items()}

    @field_validator("tables", mode="before", check_fields=False)
    @classmethod
    def _tables(cls, value: Any) -> tuple[str, ...]:
        return tables_value(value)


class LocationOptions(_Variables):
    """What shapes the code location itself, read when Dagster loads it (never at import): the tables of
    ``websync_job``, the nightly cron, the diff sensor's interval, the freshness expected of each prod load."""

    tables: Tables = Field(DEFAULT_TABLES, validation_alias="WEBSYNC_TABLES")
    nightly_cron: str = Field("0 3 * * *", validation_alias="WEBSYNC_NIGHTLY_CRON")
    diff_interval_s: WholeSecondsAbove0 = Field(600, validation_alias="WEBSYNC_DIFF_INTERVAL_S")
    freshness_warn_h: Hours = Field(26.0, validation_alias="WEBSYNC_FRESHNESS_WARN_H")
    freshness_fail_h: Hours = Field(50.0, validation_alias="WEBSYNC_FRESHNESS_FAIL_H")

    @field_validator("nightly_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron("WEBSYNC_NIGHTLY_CRON", value)

    @model_check(mode="after")
    def _windows(self) -> LocationOptions:
        if not 0 < self.freshness_warn_h < self.freshness_fail_h:
            raise ValueError(f"WEBSYNC_FRESHNESS_WARN_H ({self.freshness_warn_h:g}) must be above 0 and below "
                             f"WEBSYNC_FRESHNESS_FAIL_H ({self.freshness_fail_h:g})")
        return self


class Settings(_Variables):
    """What a run uses. The fields are in the order they are checked (the first bad one is the line shown)."""

    dev_url: SecretStr | None = Field(None, validation_alias="WEBSYNC_DEV_URL", description="dev Postgres URL")
    prod_url: SecretStr | None = Field(None, validation_alias="WEBSYNC_PROD_URL", description="prod Postgres URL")
    prod_psql: SecretStr | None = Field(None, validation_alias="WEBSYNC_PROD_PSQL",
                                        description="remote psql command of the ssh_psql transport")
    vps_host: str | None = Field(None, validation_alias="VPS_HOST", description="SSH host of prod (unset: direct)")
    vps_port: TcpPort = Field(22, validation_alias="VPS_PORT", description="SSH port")
    vps_user: str | None = Field(None, validation_alias="VPS_USER", description="SSH user")
    vps_password: SecretStr | None = Field(None, validation_alias="VPS_PASSWORD")
    vps_key_file: str | None = Field(None, validation_alias="VPS_KEY_FILE", description="SSH private key file")
    vps_key_passphrase: SecretStr | None = Field(None, validation_alias="VPS_KEY_PASSPHRASE")
    vps_known_hosts: str = Field("~/.ssh/known_hosts", validation_alias="VPS_KNOWN_HOSTS",
                                 description="known_hosts file the SSH host key is checked against")
    vps_host_key_sha256: str | None = Field(None, validation_alias="VPS_HOST_KEY_SHA256",
                                            description="pinned SHA256 fingerprint of the SSH host key")
    prod_psql_per_transaction: Switch = Field(
        False, validation_alias="WEBSYNC_PROD_PSQL_PER_TRANSACTION",
        description="ssh_psql starts a psql per transaction (else one serves a session, where the VPS has GNU head)")
    ssh_compression_level: ZlibLevel = Field(6, validation_alias="WEBSYNC_SSH_COMPRESSION_LEVEL",
                                             description="zlib level of SSH compression (0: none)")
    reindex_url: str | None = Field(None, validation_alias="WEBSYNC_REINDEX_URL",
                                    description="reindex request sent from the prod host after a sync")
    reindex_method: str = Field("POST", validation_alias="WEBSYNC_REINDEX_METHOD",
                                description="HTTP method of the reindex request")
    reindex_token: SecretStr | None = Field(None, validation_alias="WEBSYNC_REINDEX_TOKEN")
    export_dir: Path = Field(Path("exports"), validation_alias="WEBSYNC_EXPORT_DIR",
                             description="where exports, reject files and manifests are written")
    tables: Tables = Field(DEFAULT_TABLES, validation_alias="WEBSYNC_TABLES", description="the tables synced")
    update_newer: Tables = Field((), validation_alias="WEBSYNC_UPDATE_NEWER",
                                 description="table:version_column,... updated in prod where dev's row is newer")
    progress_every_s: Seconds = Field(5.0, validation_alias="WEBSYNC_PROGRESS_EVERY_S",
                                      description="seconds between two progress lines of a transfer")
    diff_auto_sync: Switch = Field(False, validation_alias="WEBSYNC_DIFF_AUTO_SYNC",
                                   description="the diff sensor launches websync_job when prod lacks rows")
    wait_s: WholeSeconds = Field(600, validation_alias="WEBSYNC_WAIT_S",
                                 description="how long a run waits for a slot or a lock held by another")
    prod_idle_timeout_s: WholeSecondsAbove0 = Field(
        60, validation_alias="WEBSYNC_PROD_IDLE_TIMEOUT_S",
        description="prod ends a websync session whose transaction stays idle this long")
    commit_every_s: Annotated[float | None, Field(ge=0, allow_inf_nan=False),
                              Says("must be a number of seconds (0 or more)")] = Field(
        4.0, validation_alias="WEBSYNC_COMMIT_EVERY_S",
        description="a table's rows are committed in units of about this many seconds of sending (0: one unit)")
    dagster_home: str | None = Field(None, validation_alias="DAGSTER_HOME")
    dagster_pg_url: SecretStr | None = Field(None, validation_alias="DAGSTER_PG_URL")

    @field_validator("update_newer", mode="before")
    @classmethod
    def _update_newer(cls, value: Any) -> tuple[str, ...]:
        return update_newer_value(value)

    @property
    def version_columns(self) -> dict[str, str]:
        """The tables opted in to newer-wins updates, each with its version column (WEBSYNC_UPDATE_NEWER)."""
        return dict(item.split(":", 1) for item in self.update_newer)

    @field_validator("dev_url", "prod_url", mode="before")
    @classmethod
    def _pg_url(cls, value: Any, info: ValidationInfo) -> Any:
        check_pg_url(variable(cls, info.field_name or ""), reveal(value) or "")
        return value

    @field_validator("vps_port", "ssh_compression_level", mode="before")
    @classmethod
    def _only_with_a_host(cls, value: Any, info: ValidationInfo) -> Any:
        """Read only when VPS_HOST is set (without it there is no SSH to configure)."""
        return value if info.data.get("vps_host") else cls.model_fields[info.field_name or ""].default

    @field_validator("reindex_url")
    @classmethod
    def _reindex_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_reindex_url(value)
        return value

    @field_validator("reindex_method", mode="before")
    @classmethod
    def _reindex_method(cls, value: Any, info: ValidationInfo) -> Any:
        return check_reindex_method(str(value)) if info.data.get("reindex_url") else "POST"

    @field_validator("commit_every_s")
    @classmethod
    def _one_unit(cls, value: float | None) -> float | None:
        return value or None

    @model_check(mode="after")
    def _together(self) -> Settings:
        if self.dev_url is None:
            raise ValueError("WEBSYNC_DEV_URL is not set: the dev database URL is required")
        if self.prod_psql and not self.vps_host:
            raise ValueError("WEBSYNC_PROD_PSQL is set but VPS_HOST is not: the psql command runs on the VPS over SSH")
        return self

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from field values (a Dagster run's config and the loaded secrets), checked as the
        environment's are; reads no environment."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise one_line(cls, exc) from None

    @classmethod
    def secret_fields(cls) -> tuple[str, ...]:
        return tuple(n for n, f in cls.model_fields.items() if SecretStr in (f.annotation, *get_args(f.annotation)))

    def public_values(self) -> dict[str, Any]:
        """The values that are not secret, as plain JSON values (what a Dagster resource's config may show)."""
        return self.model_dump(mode="json", exclude=set(self.secret_fields()))

    def secret_values(self) -> dict[str, SecretStr]:
        return {n: v for n in self.secret_fields() if isinstance(v := getattr(self, n), SecretStr)}

    @property
    def ssh(self) -> SshSettings | None:
        if not self.vps_host:
            return None
        return SshSettings(host=self.vps_host, port=self.vps_port, user=self.vps_user, password=self.vps_password,
                           key_file=self.vps_key_file, key_passphrase=self.vps_key_passphrase,
                           known_hosts=self.vps_known_hosts, host_key_sha256=self.vps_host_key_sha256,
                           compression_level=self.ssh_compression_level)

    @property
    def reindex(self) -> ReindexSettings | None:
        if not self.reindex_url:
            return None
        return ReindexSettings(url=self.reindex_url, method=self.reindex_method, token=self.reindex_token)

    @property
    def transport_name(self) -> str:
        if self.prod_psql:
            return "ssh_psql"
        return "ssh_tunnel" if self.ssh else "direct"

    def redactor(self) -> Redactor:
        """Hides every secret of the settings: the URLs' passwords, the SSH password and passphrase, the
        reindex token and what the psql command holds."""
        secrets = [reveal(s) for s in (self.vps_password, self.vps_key_passphrase, self.reindex_token)]
        for url in (self.dev_url, self.prod_url, self.dagster_pg_url):
            if url is not None:
                secrets.append(urlsplit(reveal(url)).password)
        secrets += command_secrets(reveal(self.prod_psql))
        return Redactor(secrets)

    def describe(self) -> dict[str, str]:
        """What a run is pointed at, safe to show."""
        where = {"dev": safe_url(reveal(self.dev_url) or ""), "transport": self.transport_name}
        if self.prod_url:
            where["prod"] = safe_url(reveal(self.prod_url) or "")
        if self.ssh:
            where["ssh"] = f"{self.ssh.user or ''}@{self.ssh.host}:{self.ssh.port}"
        if self.prod_psql:
            where["prod_psql"] = self.redactor()(reveal(self.prod_psql) or "")
        return where


def load_settings(
    env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env", *, require_prod: bool = True,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the environment (``env`` in its place when given), which wins, and ``env_file``; bad input
    is one clear line. ``require_prod=False`` (the offline export) accepts settings that do not say where prod
    is: whatever then needs prod refuses in the same one line. ``overrides`` (variables, e.g. ``--tables``'s
    WEBSYNC_TABLES) win over both."""
    settings = read_model(Settings, env, env_file, overrides)
    if require_prod and not settings.prod_url and not settings.prod_psql:
        raise ConfigError(NO_PROD)
    return settings


def load_location_options(
    env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env", *,
    overrides: Mapping[str, str] | None = None,
) -> LocationOptions:
    """The code location's options from the environment (which wins) and ``env_file``; needs no database URL."""
    return read_model(LocationOptions, env, env_file, overrides)
