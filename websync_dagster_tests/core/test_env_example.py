"""`.env.example` documents every variable websync reads, and each of its prod set-ups loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from websync_dagster.core import settings as settings_module
from websync_dagster.core.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / ".env.example").read_text()
SET_UPS = {"direct": "(1)", "ssh_tunnel": "(2)", "ssh_psql": "(3)"}


def _read_variables() -> set[str]:
    """Every variable the settings read: the aliases of the fields of Settings and LocationOptions."""
    models = (settings_module.Settings, settings_module.LocationOptions)
    return {str(f.validation_alias) for model in models for f in model.model_fields.values()}


def test_every_variable_the_settings_read_is_in_the_example():
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", EXAMPLE, re.M))
    read = _read_variables()
    assert len(read) > 20
    assert read - documented == set()


@pytest.mark.parametrize("transport", sorted(SET_UPS))
def test_each_prod_set_up_of_the_example_loads_as_that_transport(transport, tmp_path):
    """Uncomment one set-up (the lines of its paragraph) and load it as a user's .env would be."""
    lines, section = [], None
    for line in EXAMPLE.splitlines():
        if line.startswith("# ("):
            section = line[2:5]
        elif not line.startswith("#"):
            section = None if not line.strip() else section
        if section == SET_UPS[transport] and re.match(r"^# [A-Z_]+=", line):
            lines.append(line[2:].split("  #")[0].strip())
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join([line for line in EXAMPLE.splitlines() if re.match(r"^[A-Z_]+=", line)] + lines))
    settings = load_settings({}, env_file=env_file)
    assert settings.transport_name == transport
