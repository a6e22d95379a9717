"""Settings validation, without servers: every bad value is refused when settings load, in one line
naming the variable, before any run starts. The code location's own options (the cron, the sensor's interval)
are LocationOptions, refused the same way when they load."""

from __future__ import annotations

import pytest

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import load_location_options, load_settings

BASE = {"WEBSYNC_DEV_URL": "postgresql://dev@127.0.0.1:5432/dev", "WEBSYNC_PROD_URL": "postgresql://p@10.0.0.2/prod"}


#: the variables of the code location's options (LocationOptions), not of a run's Settings
LOCATION = ("WEBSYNC_DIFF_INTERVAL_S", "WEBSYNC_NIGHTLY_CRON")


def _load(**extra: str):
    return load_settings({**BASE, **extra}, env_file=None)


def _location(**extra: str):
    return load_location_options({**BASE, **extra}, env_file=None)


def test_defaults_of_the_new_values():
    settings = _load()
    assert _location().diff_interval_s == 600
    assert _location().nightly_cron == "0 3 * * *"
    assert settings.progress_every_s == 5.0
    assert settings.diff_auto_sync is False
    assert settings.wait_s == 600


def test_good_values_are_read():
    location = _location(WEBSYNC_DIFF_INTERVAL_S="30", WEBSYNC_NIGHTLY_CRON="*/15 2-4 1,15 jan-jun mon-fri")
    settings = _load(WEBSYNC_PROGRESS_EVERY_S="0.5", WEBSYNC_DIFF_AUTO_SYNC="Yes", WEBSYNC_WAIT_S="0",
                     WEBSYNC_REINDEX_URL="https://prod.example/reindex", WEBSYNC_REINDEX_METHOD="put",
                     WEBSYNC_TABLES="web_pages, web_sources")
    assert location.diff_interval_s == 30
    assert location.nightly_cron == "*/15 2-4 1,15 jan-jun mon-fri"
    assert settings.progress_every_s == 0.5
    assert settings.diff_auto_sync is True
    assert settings.wait_s == 0
    assert settings.reindex is not None and settings.reindex.method == "PUT"
    assert settings.tables == ("web_sources", "web_pages")
    assert _load(WEBSYNC_DIFF_AUTO_SYNC="off").diff_auto_sync is False


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("WEBSYNC_DIFF_INTERVAL_S", "abc", "WEBSYNC_DIFF_INTERVAL_S must be a whole number of seconds above 0, not 'abc'"),
    ("WEBSYNC_DIFF_INTERVAL_S", "0", "WEBSYNC_DIFF_INTERVAL_S must be a whole number of seconds above 0, not '0'"),
    ("WEBSYNC_DIFF_INTERVAL_S", "1.5", "WEBSYNC_DIFF_INTERVAL_S must be a whole number of seconds above 0, not '1.5'"),
    ("WEBSYNC_NIGHTLY_CRON", "0 3 * *", "WEBSYNC_NIGHTLY_CRON must be a 5-field cron expression "
                                        "(minute hour day month weekday), not '0 3 * *'"),
    ("WEBSYNC_NIGHTLY_CRON", "61 3 * * *", "WEBSYNC_NIGHTLY_CRON: minute 61 is out of range 0-59 in '61 3 * * *'"),
    ("WEBSYNC_NIGHTLY_CRON", "0 3 * * funday", "WEBSYNC_NIGHTLY_CRON: weekday 'funday' is not a number or a name "
                                               "in '0 3 * * funday'"),
    ("WEBSYNC_NIGHTLY_CRON", "*/0 3 * * *", "WEBSYNC_NIGHTLY_CRON: minute step '0' must be a number above 0 "
                                            "in '*/0 3 * * *'"),
    ("WEBSYNC_NIGHTLY_CRON", "0 5-2 * * *", "WEBSYNC_NIGHTLY_CRON: hour range 5-2 runs backwards in '0 5-2 * * *'"),
    ("WEBSYNC_PROGRESS_EVERY_S", "often", "WEBSYNC_PROGRESS_EVERY_S must be a number of seconds (0 or more), "
                                          "not 'often'"),
    ("WEBSYNC_PROGRESS_EVERY_S", "-1", "WEBSYNC_PROGRESS_EVERY_S must be a number of seconds (0 or more), not '-1'"),
    ("WEBSYNC_PROGRESS_EVERY_S", "nan", "WEBSYNC_PROGRESS_EVERY_S must be a number of seconds (0 or more), not 'nan'"),
    ("WEBSYNC_DIFF_AUTO_SYNC", "maybe", "WEBSYNC_DIFF_AUTO_SYNC must be one of 1/true/yes/on or 0/false/no/off, "
                                        "not 'maybe'"),
    ("WEBSYNC_WAIT_S", "forever", "WEBSYNC_WAIT_S must be a whole number of seconds (0 or more), not 'forever'"),
    ("VPS_PORT", "ssh", "VPS_PORT must be a TCP port number, not 'ssh'"),
    ("WEBSYNC_TABLES", " , ", "WEBSYNC_TABLES names no table (' , '): leave it unset to sync all four"),
    ("WEBSYNC_UPDATE_NEWER", "web_page:updated_at", "WEBSYNC_UPDATE_NEWER: unknown table 'web_page': websync syncs "
                                                    "web_sources, knowledge_base, web_pages, web_files"),
    ("WEBSYNC_UPDATE_NEWER", "web_pages,web_pages:crawled_at", "WEBSYNC_UPDATE_NEWER names web_pages twice"),
    ("WEBSYNC_UPDATE_NEWER", "knowledge_base_chunks", "WEBSYNC_UPDATE_NEWER: table knowledge_base_chunks is never "
                                                      "synced: prod rebuilds it after a sync"),
    ("WEBSYNC_REINDEX_METHOD", "FETCH", "WEBSYNC_REINDEX_METHOD must be one of GET, POST, PUT, PATCH, DELETE, "
                                        "not 'FETCH'"),
    ("WEBSYNC_REINDEX_URL", "ftp://prod/reindex", "WEBSYNC_REINDEX_URL must be an http:// or https:// URL with a host, "
                                                  "not 'ftp://prod/reindex'"),
    ("WEBSYNC_REINDEX_URL", "https://prod:eighty/x", "WEBSYNC_REINDEX_URL has a port that is not a number (1-65535): "
                                                     "https://prod:eighty/x"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, value, expected):
    extra = {name: value}
    if name == "VPS_PORT":
        extra["VPS_HOST"] = "vps.example"
    if name == "WEBSYNC_REINDEX_METHOD":
        extra["WEBSYNC_REINDEX_URL"] = "https://prod.example/reindex"
    with pytest.raises(ConfigError) as caught:
        (_location if name in LOCATION else _load)(**extra)
    assert str(caught.value) == expected


@pytest.mark.parametrize(("name", "url", "expected"), [
    ("WEBSYNC_DEV_URL", "postgresql://dev:s3cret@db.example:54x2/dev",
     "WEBSYNC_DEV_URL has a port that is not a number (1-65535): postgresql://dev:***@db.example:54x2/dev"),
    ("WEBSYNC_PROD_URL", "postgresql://p@10.0.0.2:70000/prod",
     "WEBSYNC_PROD_URL has a port that is not a number (1-65535): postgresql://p@10.0.0.2:70000/prod"),
])
def test_a_url_with_a_bad_port_is_refused_without_its_password(name, url, expected):
    with pytest.raises(ConfigError) as caught:
        _load(**{name: url})
    assert str(caught.value) == expected
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("host=10.0.0.2 user=p password=s3cret dbname=prod", "host=10.0.0.2 user=p password=*** dbname=prod"),
    ("user=p password='s3cret word' host=h", "user=p password=*** host=h"),
    ("postgresq://p@h/prod?password=s3cret&sslmode=require", "postgresq://p@h/prod?password=***&sslmode=require"),
])
def test_a_database_setting_that_is_not_a_url_is_refused_without_its_password(url, shown):
    """A key=value conninfo (what psql also takes) is not what websync reads: the line shows it, not its password."""
    with pytest.raises(ConfigError) as caught:
        _load(WEBSYNC_PROD_URL=url)
    assert str(caught.value) == f"WEBSYNC_PROD_URL is not a postgresql:// URL: {shown}"
    assert "s3cret" not in str(caught.value)


def test_the_environment_wins_over_the_env_file_and_a_blank_value_is_unset(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("WEBSYNC_DEV_URL=postgresql://file@h/dev\nWEBSYNC_WAIT_S=5\nWEBSYNC_EXPORT_DIR=from-file\n"
                        "VPS_HOST=\n")
    for name in ("WEBSYNC_DEV_URL", "VPS_HOST", "WEBSYNC_EXPORT_DIR", "WEBSYNC_TABLES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEBSYNC_WAIT_S", " 9 ")
    monkeypatch.setenv("WEBSYNC_EXPORT_DIR", "  ")
    settings = load_settings(env_file=env_file, require_prod=False)
    assert settings.dev_url is not None and settings.dev_url.get_secret_value() == "postgresql://file@h/dev"
    assert settings.wait_s == 9  # the environment's, its spaces left out
    assert str(settings.export_dir) == "exports"  # set blank in the environment: unset, whatever the file says
    assert settings.ssh is None
    given = load_settings({"WEBSYNC_WAIT_S": "3"}, env_file=env_file, require_prod=False)
    assert given.wait_s == 3 and given.dev_url is not None  # a mapping in place of the environment, over the file


def test_overrides_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("WEBSYNC_TABLES", "web_pagez")  # a command line's --tables replaces a bad value
    settings = load_settings({**BASE, "WEBSYNC_TABLES": "web_pagez"}, env_file=None,
                             overrides={"WEBSYNC_TABLES": "web_files"})
    assert settings.tables == ("web_files",)
    assert load_location_options(env_file=None, overrides={"WEBSYNC_TABLES": "web_files"}).tables == ("web_files",)


def test_nothing_but_the_variables_given_is_read(monkeypatch):
    monkeypatch.setenv("WEBSYNC_WAIT_S", "forever")  # bad, but the settings are given a mapping instead
    assert _load().wait_s == 600


def test_update_newer_names_each_table_with_its_version_column_updated_at_by_default():
    settings = _load(WEBSYNC_UPDATE_NEWER=" web_pages , knowledge_base:version ,")
    assert settings.update_newer == ("web_pages:updated_at", "knowledge_base:version")
    assert settings.version_columns == {"web_pages": "updated_at", "knowledge_base": "version"}
    assert _load().version_columns == {}  # insert-only unless a table opts in

