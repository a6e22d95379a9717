"""The CLI opens a run's connections and plans while Dagster starts (engine/ahead.py), and the run's step uses
them; what cannot be opened ahead, or was opened for other settings, is dropped and the run opens its own."""

from __future__ import annotations

import psycopg
import pytest
from pydantic import SecretStr

from websync_dagster.engine import ahead


def test_a_cli_sync_runs_on_the_connections_opened_while_dagster_starts(sync_env, tmp_path, monkeypatch):
    from websync_dagster.cli import runner
    from websync_dagster.defs import resources

    taken = []

    def spy(settings):
        context = ahead.take(settings)
        taken.append(context)
        return context

    monkeypatch.setattr(resources, "take_ahead", spy)
    for name, value in {**sync_env.env, "DAGSTER_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    assert runner.run("sync", env_file="/dev/null", quiet=True) == 0
    assert len(taken) == 1 and taken[0] is not None  # the step took the context the CLI opened ahead
    with psycopg.connect(sync_env.prod_url) as prod:
        assert prod.execute("SELECT count(*) FROM web_pages").fetchone()[0] > 0
    assert ahead.take(taken[0].settings) is None  # taken once: nothing left behind


@pytest.mark.parametrize("case", ["other settings", "unreachable"])
def test_what_was_opened_for_other_settings_or_failed_is_dropped(sync_env, case):
    settings = sync_env.settings()
    if case == "unreachable":
        settings = settings.model_copy(update={"dev_url": SecretStr("postgresql://nobody@127.0.0.1:1/none")})
        ahead.open_ahead(settings)
        assert ahead.take(settings) is None
    else:
        ahead.open_ahead(settings)
        other = settings.model_copy(update={"wait_s": settings.wait_s + 1})
        assert ahead.take(other) is None
    assert ahead.take(settings) is None
