"""How prod is reached: ``direct`` (a URL), ``ssh_tunnel`` (port-forward over SSH), ``ssh_psql`` (psql on the VPS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import NO_PROD, reveal

if TYPE_CHECKING:
    from websync_dagster.core.settings import Settings
    from websync_dagster.transport.base import ProdTransport


def make_transport(settings: Settings) -> ProdTransport:
    """The transport the settings ask for: ssh_psql if WEBSYNC_PROD_PSQL, ssh_tunnel if VPS_HOST, else direct."""
    if settings.transport_name == "ssh_psql":
        from websync_dagster.transport.psql import SshPsqlTransport

        return SshPsqlTransport(settings)
    if settings.transport_name == "ssh_tunnel":
        from websync_dagster.transport.tunnel import SshTunnelTransport

        return SshTunnelTransport(settings)
    from websync_dagster.transport.direct import DirectTransport

    if settings.prod_url is None:
        raise ConfigError(NO_PROD)
    return DirectTransport(reveal(settings.prod_url) or "", settings.redactor(), settings.prod_idle_timeout_s,
                           settings.wait_s)
