"""Keep secrets out of anything shown to a user: logs, metadata, exceptions, exports."""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@", re.I)
#: ``NAME=value`` where the name says it is a secret: shell assignments (``PGPASSWORD=x``), long options
#: (``--password=x``), conninfo and query parameters (``password=x``)
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>(?<![\w-])-{0,2}[\w-]*(?:pass|secret|token)[\w-]*=)(?P<value>'[^']*'|\"[^\"]*\"|[^\s'\"]+)", re.I
)
#: ``password=`` of a key=value conninfo (quoted or not) or of a URL's query string
_PASSWORD_PARAMETER = re.compile(r"(?P<key>(?<![\w-])password\s*=\s*)(?P<value>'[^']*'|[^\s&']+)", re.I)
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.I)
_MIN_SECRET = 3


def safe_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (works for any host form, ``docker:<name>`` included), also
    when it is written as a query parameter, or as a key=value conninfo instead of a URL."""
    url = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _PASSWORD_PARAMETER.sub(lambda m: f"{m['key']}***", url)


def _shell_words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # unbalanced quotes: the words as written
        return command.split()


def command_secrets(command: str | None) -> list[str]:
    """The secret values written inside a shell command (e.g. ``WEBSYNC_PROD_PSQL``), unquoted as the
    shell would pass them: URL passwords and values of ``PGPASSWORD=``, ``--password=``, ``*TOKEN*=``..."""
    found: list[str] = []
    for word in _shell_words(command or ""):
        whole = _SECRET_ASSIGNMENT.match(word)
        if whole:  # the shell passes everything after '=' (spaces included, once unquoted)
            found.append(word[whole.end("key"):])
        else:  # conninfo or query parameters inside one argument
            found += [m["value"].strip("'\"") for m in _SECRET_ASSIGNMENT.finditer(word)]
        for url in _URL.findall(word):
            with contextlib.suppress(ValueError):
                password = urlsplit(url).password or ""
                found += [password, unquote(password)]
    return [s for s in dict.fromkeys(found) if len(s) >= _MIN_SECRET]


class Redactor:
    """Replaces known secret values, URL passwords and ``<name with PASS/SECRET/TOKEN>=value`` in text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= _MIN_SECRET and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        # known values first: a password holding '@' or a space would defeat the patterns below
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _SECRET_ASSIGNMENT.sub(lambda m: f"{m['key']}***", safe_url(text))
