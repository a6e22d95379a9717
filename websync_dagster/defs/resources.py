"""The one Dagster resource: where dev and prod are, read from the environment at run time.

Connection strings and passwords never go through Dagster config (which the UI shows): the
resource only names the ``.env`` file and reads the variables when a step runs. Within a run, the
steps share one ``SyncContext`` (one dev connection, one prod session, one SSH connection).
"""

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from websync_dagster.core.settings import Settings, load_settings
from websync_dagster.engine.run import SyncContext


class WebsyncResource(ConfigurableResource):
    """Settings of the sync (WEBSYNC_*, VPS_*), from the environment and an optional .env file."""

    env_file: str = Field(default=".env", description="dotenv file read before the environment (which wins)")
    _context: SyncContext | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        return load_settings(env_file=self.env_file, require_prod=False)

    def sync_context(self) -> SyncContext:
        """The run's shared connections, opened on first use (so that bad settings fail inside a step,
        with the step's clear error, not while Dagster sets resources up)."""
        if self._context is None:
            self._context = SyncContext(self.settings())
        return self._context

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None
