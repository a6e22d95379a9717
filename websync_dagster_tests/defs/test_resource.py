"""The Dagster resource without servers: the settings it is built with are the ones a run uses (nothing reads the
environment after they are loaded), its config fields are the settings that are not secret, and no secret is in a
run's config or its job snapshot (what the UI shows)."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, serialize_value
from pydantic import SecretStr

from websync_dagster.core.settings import Settings, load_settings
from websync_dagster.definitions import defs
from websync_dagster.defs.resources import WebsyncResource

SECRETS = {"WEBSYNC_DEV_URL": "postgresql://dev:dev-secret-1@127.0.0.1:1/dev",
           "WEBSYNC_PROD_URL": "postgresql://prod:prod-secret-2@127.0.0.1:2/prod",
           "VPS_PASSWORD": "vps-secret-3", "VPS_KEY_PASSPHRASE": "phrase-secret-4",
           "WEBSYNC_REINDEX_TOKEN": "token-secret-5",
           "WEBSYNC_PROD_PSQL": "env PGPASSWORD=psql-secret-6 psql -U u"}
SECRET_VALUES = ["dev-secret-1", "prod-secret-2", "vps-secret-3", "phrase-secret-4", "token-secret-5", "psql-secret-6"]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**SECRETS, "VPS_HOST": "vps.example", "WEBSYNC_REINDEX_URL": "https://prod.example/r",
                        "WEBSYNC_WAIT_S": "7"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir("/")  # no .env here


def _failures(result) -> list[str]:
    return [e.step_failure_data.user_failure_data.description for e in result.all_events
            if e.event_type_value == "STEP_FAILURE"]


def test_every_secret_is_a_secret_str_and_hidden_in_the_repr(environment):
    settings = load_settings(require_prod=False)
    for name in ("dev_url", "prod_url", "prod_psql", "vps_password", "vps_key_passphrase", "reindex_token"):
        assert isinstance(getattr(settings, name), SecretStr), name
    assert settings.ssh is not None and isinstance(settings.ssh.password, SecretStr)
    assert settings.reindex is not None and isinstance(settings.reindex.token, SecretStr)
    shown = repr(settings) + str(settings) + repr(settings.ssh) + repr(settings.reindex)
    assert not [s for s in SECRET_VALUES if s in shown]
    redact = settings.redactor()
    assert redact(" ".join(SECRET_VALUES)) == " ".join(["***"] * len(SECRET_VALUES))


def test_the_resource_shows_the_settings_that_are_not_secret_as_its_config_fields(environment):
    resource = defs().resources["websync"]
    assert isinstance(resource, WebsyncResource)
    assert resource.vps_host == "vps.example" and resource.wait_s == 7
    public = set(Settings.model_fields) - set(Settings.secret_fields()) - {"dagster_home"}
    assert set(WebsyncResource.config_fields()) == public
    for name in WebsyncResource.config_fields():
        description = WebsyncResource.model_fields[name].description or ""
        assert description.startswith(str(Settings.model_fields[name].validation_alias)), name


def test_no_secret_in_a_runs_config_or_its_job_snapshot(environment):
    instance = DagsterInstance.ephemeral()
    job = defs().resolve_job_def("status_job")
    result = job.execute_in_process(instance=instance, raise_on_error=False,
                                    run_config={"resources": {"websync": {"config": {"wait_s": 3}}}})
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    recorded = serialize_value(run) + serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
    assert "vps.example" in recorded  # the config fields are there...
    assert not [s for s in SECRET_VALUES if s in recorded]  # ...the secrets are not
    assert not [s for s in SECRET_VALUES if s in serialize_value(job.get_job_snapshot())]


def test_a_run_uses_the_settings_loaded_not_the_environment_of_later(environment, monkeypatch):
    monkeypatch.delenv("VPS_HOST")  # direct to prod: a refused connection says where it went
    monkeypatch.delenv("WEBSYNC_PROD_PSQL")
    loaded = defs()
    monkeypatch.setenv("WEBSYNC_PROD_URL", "postgresql://prod:other@127.0.0.1:3/prod")
    monkeypatch.setenv("WEBSYNC_WAIT_S", "not a number")
    result = loaded.resolve_job_def("status_job").execute_in_process(instance=DagsterInstance.ephemeral(),
                                                                      raise_on_error=False)
    [failure] = _failures(result)
    assert "cannot connect to prod database at postgresql://prod:***@127.0.0.1:2/prod" in failure


def test_a_runs_config_is_checked_as_the_environment_is(environment):
    job = defs().resolve_job_def("status_job")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False,
                                    run_config={"resources": {"websync": {"config": {"wait_s": -1}}}})
    assert _failures(result) == ["WEBSYNC_WAIT_S must be a whole number of seconds (0 or more), not '-1'"]


def test_bad_settings_still_load_the_location_and_fail_the_step_in_one_line(environment, monkeypatch):
    monkeypatch.setenv("VPS_PORT", "ssh")
    job = defs().resolve_job_def("status_job")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert _failures(result) == ["VPS_PORT must be a TCP port number, not 'ssh'"]
