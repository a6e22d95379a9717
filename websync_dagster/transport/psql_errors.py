"""How psql's errors are read on the ``ssh_psql`` transport: by the SQLSTATE that ``VERBOSITY=verbose`` prints
and by psql's exit status, never by their words (prod's ``lc_messages`` translates them)."""

from __future__ import annotations

import re

import psycopg

from websync_dagster.core.errors import SyncError

#: a server error as libpq prints it (after psql's ``psql:<file>:<line>: `` when reading a file): the severity
#: word is translated with prod's lc_messages (``ERREUR``, ``FEHLER``; one word in every language PostgreSQL
#: ships), the SQLSTATE never is
_STATE_LINE = re.compile(r"^(?:psql:.*?:\d+: )?[^\s:]+:  (?P<state>[0-9A-Z]{5}): (?P<message>.*)$")
#: a server error without its SQLSTATE: one sent while psql connects, before the verbosity applies
_SEVERITY_LINE = re.compile(r"(?:^|: )[^\s:]+:  (?P<message>\S.*)$")
#: SQLSTATE classes that are not errors: success, warning, no data (a NOTICE or WARNING printed before the error)
_NOT_ERRORS = ("00", "01", "02")
#: psql's exit status when its connection to the server went bad (EXIT_BADCONN; 3: an error in the script
#: under ON_ERROR_STOP, 1: psql's own fatal error such as a missing file)
EXIT_BADCONN = 2


class PsqlError(SyncError, psycopg.Error):
    """psql on the VPS reported an error. ``sqlstate`` is prod's code for it (None when psql printed none), so
    the engine's classifiers read it as they read a psycopg error's: a row's refusal by its class, a lost
    link by 08xxx, 57P01... (``ProdSession.connection_lost``)."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class PsqlConnectionLost(PsqlError, psycopg.OperationalError):
    """psql's connection went bad (exit status 2) and the server said nothing: libpq's own message (the
    server closed the connection, could not connect). Like psycopg's OperationalError without a sqlstate, it
    is a lost link; what the script had not committed was rolled back."""


def psql_error(status: int, stderr: str, *, where: str, otherwise: str) -> PsqlError:
    """The error that psql's exit ``status`` and ``stderr`` report, read by their structure, not by words
    (which are translated): the first line with an error's SQLSTATE gives its code and message; without one,
    exit status 2 says that the connection went bad. ``where`` prefixes the message; ``otherwise`` is the
    message when psql printed no server message at all (the remote command itself failed)."""
    lines = stderr.split("\n")
    for line in lines:
        match = _STATE_LINE.match(line)
        if match and match["state"][:2] not in _NOT_ERRORS:
            return PsqlError(f"{where}: {match['message'].strip()}", sqlstate=match["state"])
    said = next((m["message"].strip() for m in map(_SEVERITY_LINE.search, lines) if m), None)
    if status == EXIT_BADCONN:
        said = said or next((line.strip() for line in lines if line.strip()), f"psql exit status {status}")
        return PsqlConnectionLost(f"{where}: {said}")
    return PsqlError(f"{where}: {said}" if said else otherwise)
