"""The reindex request after a sync, against a real HTTP server on loopback, directly and from the VPS."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
from dagster import AssetKey, DagsterInstance

from websync_dagster.cli import main as websync_main
from websync_dagster.core.errors import SyncError
from websync_dagster.engine.reindex import request_reindex

TOKEN = "cron-Secret-5e1d"


class _Recorder(http.server.BaseHTTPRequestHandler):
    calls: list[dict] = []
    status = 200

    def _answer(self) -> None:
        type(self).calls.append({"method": self.command, "path": self.path,
                                 "authorization": self.headers.get("Authorization")})
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b'{"queued": 12}')

    do_POST = do_GET = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[type[_Recorder]]:
    handler = type("Handler", (_Recorder,), {"calls": [], "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/api/cron/index-kb"
    yield handler
    server.shutdown()


def test_direct_request_carries_the_bearer_token(sync_env, app):
    settings = sync_env.settings(WEBSYNC_REINDEX_URL=app.url, WEBSYNC_REINDEX_TOKEN=TOKEN)
    result = request_reindex(settings)
    assert result.status == 200 and result.sent_from == "here"
    assert app.calls == [{"method": "POST", "path": "/api/cron/index-kb", "authorization": f"Bearer {TOKEN}"}]


def test_request_is_sent_from_the_vps(sync_env, vps, app):
    env = vps.env(WEBSYNC_REINDEX_URL=app.url, WEBSYNC_REINDEX_TOKEN=TOKEN, WEBSYNC_REINDEX_METHOD="get")
    result = request_reindex(sync_env.settings(**env))
    assert (result.status, result.sent_from, result.method) == (200, "vps", "GET")
    assert app.calls[-1]["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in vps.sshd.log()
    app.status = 503
    with pytest.raises(SyncError, match="answered HTTP 503") as err:
        request_reindex(sync_env.settings(**env))
    assert TOKEN not in str(err.value)


def test_not_configured_is_skipped_with_a_reminder(sync_env):
    assert request_reindex(sync_env.settings()) is None


def test_websync_job_requests_the_reindex_and_never_logs_the_token(sync_env, app, monkeypatch, capsys, caplog):
    monkeypatch.setenv("WEBSYNC_REINDEX_URL", app.url)
    monkeypatch.setenv("WEBSYNC_REINDEX_TOKEN", TOKEN)
    assert websync_main(["sync", "--env-file", "/dev/null"]) == 0
    assert len(app.calls) == 1
    instance = DagsterInstance.from_config(str(sync_env.dagster_home))
    event = instance.get_latest_materialization_event(AssetKey(["prod", "reindex_requested"]))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["http_status"] == 200 and metadata["requested"] is True
    captured = capsys.readouterr()
    logs = json.dumps([str(e) for run in instance.get_runs() for e in instance.all_logs(run.run_id)])
    for text in (captured.out, captured.err, caplog.text, logs, json.dumps(metadata, default=str)):
        assert TOKEN not in text
    monkeypatch.delenv("WEBSYNC_REINDEX_URL")
    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 0
    event = instance.get_latest_materialization_event(AssetKey(["prod", "reindex_requested"]))
    assert event.asset_materialization.metadata["requested"].value is False
    assert "not configured" in event.asset_materialization.metadata["reminder"].value
