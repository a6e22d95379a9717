"""Ask prod to re-index after a sync: one configurable HTTP request, sent from the prod host over SSH
(with curl there, so that ``localhost`` URLs reach the app) or directly when prod is not behind SSH.

The bearer token travels on curl's stdin (``-H @-``), never on a command line, and never in a log.
"""

from __future__ import annotations

import shlex
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from websync_dagster.core.errors import SyncError
from websync_dagster.core.settings import ReindexSettings, Settings, reveal

TIMEOUT_S = 120


@dataclass(frozen=True)
class ReindexResult:
    url: str
    method: str
    status: int
    sent_from: str  # "vps" or "here"
    seconds: float


def _headers(reindex: ReindexSettings) -> dict[str, str]:
    return {"Authorization": f"Bearer {reveal(reindex.token)}"} if reindex.token else {}


def _from_vps(settings: Settings, reindex: ReindexSettings) -> int:
    # imported here: paramiko and cryptography cost every sync ~70 ms, and only this way needs them
    from websync_dagster.transport.ssh import SshConnection, remote_failure

    assert settings.ssh is not None
    command = (f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time {TIMEOUT_S} -X {shlex.quote(reindex.method)} "
               f"-H @- {shlex.quote(reindex.url)}")
    header_lines = "".join(f"{k}: {v}\n" for k, v in _headers(reindex).items())
    ssh = SshConnection(settings.ssh, settings.redactor()).connect()
    try:
        result = ssh.run(command, header_lines.encode())
    finally:
        ssh.close()
    if result.status != 0:
        raise SyncError(f"reindex request to {reindex.url} from the VPS failed: "
                        f"{remote_failure(command, result, settings.redactor())}")
    return int(result.stdout.decode().strip() or 0)


def _from_here(reindex: ReindexSettings) -> int:
    request = urllib.request.Request(reindex.url, method=reindex.method, headers=_headers(reindex))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SyncError(f"reindex request to {reindex.url} failed: {reason}") from None


def request_reindex(settings: Settings) -> ReindexResult | None:
    """Send the configured request; None when WEBSYNC_REINDEX_URL is not set."""
    reindex = settings.reindex
    if reindex is None:
        return None
    started = time.perf_counter()
    if settings.ssh is not None:
        status, sent_from = _from_vps(settings, reindex), "vps"
    else:
        status, sent_from = _from_here(reindex), "here"
    result = ReindexResult(reindex.url, reindex.method, status, sent_from, round(time.perf_counter() - started, 3))
    if not 200 <= status < 400:
        raise SyncError(f"reindex {reindex.method} {reindex.url} (sent from {sent_from}) answered HTTP {status}")
    return result
