"""The load that follows the export file as it is written: the same outcome as loading a finished
file, and nothing committed unless the export is whole."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from websync_dagster.core.errors import TableSyncError
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.export_load import run_export
from websync_dagster.engine.follow import FollowedFile
from websync_dagster.engine.load import load_followed
from websync_dagster_tests.helpers import table_snapshot


def _replay_half_then_fail(followed: FollowedFile, data: bytes, path: Path) -> threading.Thread:
    """A writer that writes the first half of a real export, pauses, then fails as a full disk would."""

    def write() -> None:
        with open(path, "wb") as out:
            followed.opened(path)
            out.write(data[: len(data) // 2])
            out.flush()
            followed.grew()
            time.sleep(0.3)  # the load's COPY is now inside prod's transaction, waiting for more
        followed.finished(OSError(28, "No space left on device"))

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_an_export_failing_midway_commits_nothing_and_names_the_export(sync_env, prod_via, tmp_path):
    settings = prod_via(sync_env)
    whole = run_export(settings, "web_pages", scope="delta")
    data = Path(whole.path).read_bytes()
    assert whole.rows > 100 and data.count(b"\n") > 100
    with sync_env.prod() as prod:
        before = table_snapshot(prod, "web_pages")
    followed = FollowedFile()
    writer = _replay_half_then_fail(followed, data, tmp_path / "web_pages.csv.partial")

    def finish_export():
        writer.join()
        raise TableSyncError("web_pages", "export failed: OSError: No space left on device")

    with SyncContext(settings) as ctx, pytest.raises(TableSyncError) as err:
        load_followed(ctx.prod, ctx.plan("web_pages"), followed, finish_export, reject_dir=tmp_path, stamp="t")
    assert str(err.value) == "web_pages: export failed: OSError: No space left on device"
    with sync_env.prod() as prod:
        assert table_snapshot(prod, "web_pages") == before

