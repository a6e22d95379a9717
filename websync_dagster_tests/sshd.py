"""The loopback OpenSSH server of the tests (websync_dagster.demo.sshd), skipped or failed when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from websync_dagster.demo.sshd import SshdUnavailable, SshServer, make_traversable, start_sshd

__all__ = ["SshServer", "make_traversable", "start_sshd_or_skip"]


def start_sshd_or_skip(workdir: Path, *, env_path: str | None = None) -> SshServer:
    """``start_sshd`` for fixtures: a missing sshd skips the test, or fails it when ``WEBSYNC_REQUIRE_SSHD=1``
    (as `make test` and CI set, after .ci/install-sshd.sh)."""
    try:
        return start_sshd(workdir, env_path=env_path)
    except SshdUnavailable as exc:
        if os.environ.get("WEBSYNC_REQUIRE_SSHD") == "1":
            pytest.fail(f"WEBSYNC_REQUIRE_SSHD=1 but no test sshd: {exc}", pytrace=False)
        pytest.skip(f"no test sshd: {exc}")
