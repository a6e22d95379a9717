"""The one Dagster resource: where dev and prod are, read from the environment at run time.

Connection strings and passwords never go through Dagster config (which the UI shows): the
resource only names the ``.env`` file and reads the variables when a step runs.
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from websync_dagster.settings import Settings, load_settings


class WebsyncResource(ConfigurableResource):
    """Settings of the sync (WEBSYNC_*, VPS_*), from the environment and an optional .env file."""

    env_file: str = Field(default=".env", description="dotenv file read before the environment (which wins)")

    def settings(self) -> Settings:
        return load_settings(env_file=self.env_file)
