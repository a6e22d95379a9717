"""Checks of configuration values: each bad value is refused with one line naming the variable."""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.redact import safe_url
from websync_dagster.core.tables import parse_tables


def check_pg_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not (parts.hostname or parts.path):
        raise ConfigError(f"{name} is not a postgresql:// URL: {safe_url(url)}")
    check_url_ports(name, url)


def check_url_ports(name: str, url: str) -> None:
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


def whole_seconds(name: str, text: str, *, minimum: int) -> int:
    if not text.isdigit() or int(text) < minimum:
        what = "above 0" if minimum > 0 else "(0 or more)"
        raise ConfigError(f"{name} must be a whole number of seconds {what}, not {text!r}")
    return int(text)


def whole_number(name: str, text: str, lowest: int, highest: int, what: str = "number") -> int:
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise ConfigError(f"{name} must be a {what} from {lowest} to {highest}, not {text!r}")
    return int(text)


def seconds(name: str, text: str, unit: str = "seconds") -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a number of {unit} (0 or more), not {text!r}")
    return value


def boolean(name: str, text: str) -> bool:
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


def check_reindex_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"WEBSYNC_REINDEX_URL must be an http:// or https:// URL with a host, not {safe_url(url)!r}")
    check_url_ports("WEBSYNC_REINDEX_URL", url)


def tables_value(value: str | None, written: str) -> tuple[str, ...]:
    """WEBSYNC_TABLES: unset means the four tables; set to only commas and spaces is a mistake, not
    'no table' (a run would sync nothing and succeed)."""
    if value and not value.replace(",", "").strip():
        raise ConfigError(f"WEBSYNC_TABLES names no table ({written!r}): leave it unset to sync all four")
    try:
        return tuple(parse_tables(value))
    except ConfigError as exc:
        raise ConfigError(f"WEBSYNC_TABLES: {exc}") from None
