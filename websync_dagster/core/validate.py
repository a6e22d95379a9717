"""The kinds of configuration value and their checks, for the pydantic models of ``settings.py``.

Plain numbers and switches are pydantic's own types with their bounds; what a bad one is told is in its ``Says``
(the variable's name comes first, the value as written last). What pydantic has no type for (cron, a Postgres URL
with websync's ``docker:<container>`` host, the table list) is checked here and refused with a ``ValueError``
whose text is the whole line. ``one_line`` turns the first problem of a validation into a ``ConfigError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.redact import safe_url
from websync_dagster.core.tables import parse_tables


@dataclass(frozen=True)
class Says:
    """What a bad value of a field is told, between the variable's name and the value written."""

    problem: str


WholeSeconds = Annotated[int, Field(ge=0), Says("must be a whole number of seconds (0 or more)")]
WholeSecondsAbove0 = Annotated[int, Field(gt=0), Says("must be a whole number of seconds above 0")]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False), Says("must be a number of seconds (0 or more)")]
Hours = Annotated[float, Field(ge=0, allow_inf_nan=False), Says("must be a number of hours (0 or more)")]
Switch = Annotated[bool, Says("must be one of 1/true/yes/on or 0/false/no/off")]
TcpPort = Annotated[int, Field(gt=0, lt=65536), Says("must be a TCP port number")]
ZlibLevel = Annotated[int, Field(ge=0, le=9), Says("must be a zlib level from 0 to 9")]

REINDEX_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def variable(model: type[BaseModel], field_name: str) -> str:
    """The environment variable a field is read from (its validation alias)."""
    alias = model.model_fields[field_name].validation_alias
    return alias if isinstance(alias, str) else field_name


def one_line(model: type[BaseModel], exc: ValidationError) -> ConfigError:
    """The first problem of a validation of ``model``, as the one line a user is shown. Never the value of a
    field without a ``Says`` (a secret's validators say their own line, without the secret)."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "value_error":
        return ConfigError(str(error["ctx"]["error"]))
    where = str(error["loc"][0]) if error["loc"] else ""
    name = next((n for n, f in model.model_fields.items() if where in (n, f.validation_alias)), None)
    if name is None:
        return ConfigError(f"{where}: {error['msg']}")
    says = next((m for m in model.model_fields[name].metadata if isinstance(m, Says)), None)
    if says is None:
        return ConfigError(f"{variable(model, name)}: {error['msg']}")
    return ConfigError(f"{variable(model, name)} {says.problem}, not {_as_written(error['input'])!r}")


def _as_written(value: Any) -> str:
    """A value as the environment would have written it (a run's config gives typed values)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_pg_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not (parts.hostname or parts.path):
        raise ValueError(f"{name} is not a postgresql:// URL: {safe_url(url)}")
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
            raise ValueError(f"{name} has a port that is not a number (1-65535): {safe_url(url)}")


def check_reindex_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"WEBSYNC_REINDEX_URL must be an http:// or https:// URL with a host, not {safe_url(url)!r}")
    check_url_ports("WEBSYNC_REINDEX_URL", url)


def check_reindex_method(method: str) -> str:
    if method.upper() not in REINDEX_METHODS:
        raise ValueError(f"WEBSYNC_REINDEX_METHOD must be one of {', '.join(REINDEX_METHODS)}, not {method!r}")
    return method.upper()


def tables_value(value: Any) -> tuple[str, ...]:
    """WEBSYNC_TABLES (a comma list, or a run config's list): set to only commas and spaces is a mistake, not
    'no table' (a run would sync nothing and succeed)."""
    if isinstance(value, str) and not value.replace(",", "").strip():
        raise ValueError(f"WEBSYNC_TABLES names no table ({value!r}): leave it unset to sync all four")
    try:
        return tuple(parse_tables(value))
    except ConfigError as exc:
        raise ValueError(f"WEBSYNC_TABLES: {exc}") from None


#: the version column of a table named without one in WEBSYNC_UPDATE_NEWER
DEFAULT_VERSION_COLUMN = "updated_at"


def update_newer_value(value: Any) -> tuple[str, ...]:
    """WEBSYNC_UPDATE_NEWER (``table[:column],...``, or a run config's list) as ``table:column`` items, each table
    once and one of the synced tables' names."""
    items = [i.strip() for i in value.split(",")] if isinstance(value, str) else [str(i).strip() for i in value]
    out: dict[str, str] = {}
    for item in filter(None, items):
        table, _, column = item.partition(":")
        table, column = table.strip(), column.strip() or DEFAULT_VERSION_COLUMN
        try:
            parse_tables(table)
        except ConfigError as exc:
            raise ValueError(f"WEBSYNC_UPDATE_NEWER: {exc}") from None
        if table in out:
            raise ValueError(f"WEBSYNC_UPDATE_NEWER names {table} twice")
        out[table] = column
    return tuple(f"{t}:{c}" for t, c in out.items())


_CRON_FIELDS = (  # (name, lowest, highest, names in order from ``lowest``) of the five cron fields
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("weekday", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"^(?P<base>\*|[^-/]+(?:-[^-/]+)?)(?:/(?P<step>.*))?$")


def _cron_value(name: str, cron: str, field_name: str, text: str, names: tuple[str, ...], lowest: int) -> int:
    if text.isdigit():
        return int(text)
    if text.lower() in names:
        return lowest + names.index(text.lower())
    raise ValueError(f"{name}: {field_name} {text!r} is not a number or a name in {cron!r}")


def check_cron(name: str, cron: str) -> str:
    """A standard 5-field cron expression (numbers, names, ``*``, lists, ranges, steps), checked field
    by field so that the error names what is wrong; Dagster would refuse it only when the code loads.
    Hand-written on purpose (about 25 lines): the cron parser Dagster uses is vendored inside its private
    API, ``croniter`` is not a dependency, and neither names the field and its range in its error."""
    fields = cron.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(f"{name} must be a 5-field cron expression (minute hour day month weekday), not {cron!r}")
    for text, (field_name, lowest, highest, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            match = _CRON_ITEM.match(item)
            if not match:
                raise ValueError(f"{name}: {field_name} {item!r} is not a cron field in {cron!r}")
            step = match["step"]
            if step is not None and not (step.isdigit() and int(step) > 0):
                raise ValueError(f"{name}: {field_name} step {step!r} must be a number above 0 in {cron!r}")
            if match["base"] == "*":
                continue
            bounds = [_cron_value(name, cron, field_name, t, names, lowest) for t in match["base"].split("-")]
            for value in bounds:
                if not lowest <= value <= highest:
                    raise ValueError(f"{name}: {field_name} {value} is out of range {lowest}-{highest} in {cron!r}")
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                raise ValueError(f"{name}: {field_name} range {match['base']} runs backwards in {cron!r}")
    return cron
