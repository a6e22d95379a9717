"""How prod is reached: ``direct`` (a URL), ``ssh_tunnel`` (port-forward over SSH), ``ssh_psql`` (psql on the VPS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from websync_dagster.settings import Settings
    from websync_dagster.transport.base import ProdTransport


def make_transport(settings: Settings) -> ProdTransport:
    """The transport the settings ask for."""
    from websync_dagster.transport.direct import DirectTransport

    if settings.transport_name == "direct":
        assert settings.prod_url is not None
        return DirectTransport(settings.prod_url, settings.redactor())
    from websync_dagster.sync.errors import ConfigError

    raise ConfigError(f"transport {settings.transport_name} is not available yet")
