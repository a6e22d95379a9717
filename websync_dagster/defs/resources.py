"""The one Dagster resource: the run's settings, as loaded once when the definitions were built.

No ``from __future__ import annotations`` here: Dagster reads the fields' annotations (``ResourceDependency``).

Within a run, the steps share one ``SyncContext`` (one dev connection, one prod session, one SSH connection).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import ConfigurableResource, InitResourceContext, ResourceDependency
from pydantic import Field, PrivateAttr, SecretStr

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import Settings
from websync_dagster.engine.ahead import take as take_ahead
from websync_dagster.engine.context import SyncContext


def _setting(name: str) -> Any:
    """The config field of setting ``name``: its default and description, named after its variable."""
    setting = Settings.model_fields[name]
    default = setting.default
    if isinstance(default, tuple):
        default = list(default)
    elif default is not None and not isinstance(default, str | int | float | bool):
        default = str(default)  # a Path
    return Field(default=default, description=f"{setting.validation_alias}: {setting.description}")


@dataclass(frozen=True)
class LoadedSecrets:
    """The secret settings as loaded, each a ``SecretStr``; or, when the settings could not be loaded, the one line
    that says why (every step that needs them fails with it; the code location still loads)."""

    values: Mapping[str, SecretStr] = field(default_factory=dict)
    problem: str | None = None


class WebsyncResource(ConfigurableResource):
    """Where dev and prod are and how a run behaves (WEBSYNC_*, VPS_*), as loaded once, from the environment and
    ``.env``, when the definitions were built: by the code location (``build_definitions``), or by the ``websync``
    CLI with its ``--env-file`` and ``--tables``. Nothing reads the environment after that.

    The config fields are the settings that are not secret: the UI shows them (Resources, the launchpad) and a run's
    config may change them, checked as the environment's values are (``Settings.of``).

    The secrets (the two database URLs, which hold their passwords, WEBSYNC_PROD_PSQL, VPS_PASSWORD,
    VPS_KEY_PASSPHRASE, WEBSYNC_REINDEX_TOKEN) are never config: Dagster turns the values a resource is given into
    the defaults of its config schema, which every job snapshot records and the UI shows. They are in ``secrets``,
    a nested resource: Dagster leaves nested resources out of the config schema (a snapshot names only their type)
    and hands the same object to the run's copy of the resource. Not ``dg.EnvVar``: it is read from os.environ
    when the run starts, so the CLI could hand it what its ``--env-file`` holds only by writing os.environ, and a
    run could use other values than the ones loaded and checked. Not the env file read again at run time: the
    settings would be loaded twice. A run launched from the UI runs in a process that loads the code location
    itself, so it uses the environment and ``.env`` of that moment.
    """

    export_dir: str = _setting("export_dir")
    tables: list[str] = _setting("tables")
    update_newer: list[str] = _setting("update_newer")
    progress_every_s: float = _setting("progress_every_s")
    diff_auto_sync: bool = _setting("diff_auto_sync")
    wait_s: int = _setting("wait_s")
    prod_idle_timeout_s: int = _setting("prod_idle_timeout_s")
    commit_every_s: float | None = _setting("commit_every_s")
    vps_host: str | None = _setting("vps_host")
    vps_port: int = _setting("vps_port")
    vps_user: str | None = _setting("vps_user")
    vps_key_file: str | None = _setting("vps_key_file")
    vps_known_hosts: str = _setting("vps_known_hosts")
    vps_host_key_sha256: str | None = _setting("vps_host_key_sha256")
    prod_psql_per_transaction: bool = _setting("prod_psql_per_transaction")
    ssh_compression_level: int = _setting("ssh_compression_level")
    reindex_url: str | None = _setting("reindex_url")
    reindex_method: str = _setting("reindex_method")
    secrets: ResourceDependency[LoadedSecrets]

    _settings: Settings | None = PrivateAttr(default=None)
    _context: SyncContext | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings | ConfigError) -> "WebsyncResource":
        """The resource of these settings; of a ConfigError, one whose steps fail with its line."""
        if isinstance(settings, ConfigError):
            return cls(secrets=LoadedSecrets(problem=str(settings)))
        public = {k: v for k, v in settings.public_values().items() if k in cls.config_fields()}
        return cls(**public, secrets=LoadedSecrets(settings.secret_values()))

    @classmethod
    def config_fields(cls) -> tuple[str, ...]:
        return tuple(n for n in cls.model_fields if n != "secrets")

    def settings(self) -> Settings:
        """The run's settings: the config fields (as the run's config has them) and the loaded secrets."""
        if self.secrets.problem is not None:
            raise ConfigError(self.secrets.problem)
        if self._settings is None:
            self._settings = Settings.of({**{n: getattr(self, n) for n in self.config_fields()},
                                          **self.secrets.values})
        return self._settings

    def sync_context(self) -> SyncContext:
        """The run's shared connections, opened on first use (so that bad settings fail inside a step,
        with the step's clear error, not while Dagster sets resources up)."""
        if self._context is None:
            settings = self.settings()
            self._context = take_ahead(settings) or SyncContext(settings)
        return self._context

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None
