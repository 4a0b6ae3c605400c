"""Loading the declarative source configs under ``include/config/`` (YAML).

Read at DAG parse time: a local file, no network, cached per process. Each pattern
validates its own section into dataclasses and names the file and key in every error.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from s3lander import settings


class ConfigError(ValueError):
    """A config file or entry that is missing or invalid; the message names both."""


@cache
def load_yaml(name: str, config_dir: str | None = None) -> dict[str, Any]:
    import yaml

    path = Path(config_dir) if config_dir else settings.CONFIG_DIR
    path = path / name
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data
