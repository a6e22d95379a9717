"""Where a settings model is read from, and which source wins: pydantic-settings reads the model from a command
line's overrides, over the process environment (or a mapping given in its place), over the env file. The models,
their checks and the public loaders are in ``websync_dagster.core.settings``."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from websync_dagster.core.validate import one_line

_Model = TypeVar("_Model", bound=BaseModel)


@functools.cache
def _reader(model: type[BaseModel], from_environ: bool) -> type[BaseSettings]:
    """``model`` read by pydantic-settings: from the keyword arguments (a command line's overrides) over the
    process environment over the env file, or (``from_environ`` False) from the keyword arguments, given in place of
    the environment, over the env file. The first source wins."""

    class Reader(BaseSettings, model):  # type: ignore[valid-type, misc]
        model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", validate_default=False)

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, dotenv_settings) if from_environ else (init_settings, dotenv_settings)

    return Reader


def read_model(model: type[_Model], env: Mapping[str, str] | None, env_file: str | Path | None,
               overrides: Mapping[str, str] | None) -> _Model:
    """``model`` from ``overrides`` over the environment (``env`` in its place when given) over ``env_file`` (if it
    is a file), as a plain instance of ``model`` (not of its pydantic-settings reader); bad input is one line
    (``ConfigError``)."""
    env_path = env_file if env_file and Path(env_file).is_file() else None
    try:
        read = _reader(model, env is None)(_env_file=env_path, **{**(env or {}), **(overrides or {})})
    except ValidationError as exc:
        raise one_line(model, exc) from None
    return model.model_construct(read.model_fields_set, **{n: getattr(read, n) for n in model.model_fields})
