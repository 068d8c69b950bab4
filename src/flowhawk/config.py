"""flowhawk's configuration: ``--config FILE`` or ``./flowhawk.yaml``, then the environment.

Keys (all optional): ``database`` (a PostgreSQL URL), ``storage`` (a directory),
``pluginDefaults`` (the flow-level shape, ``forced`` allowed), ``server`` (``username``,
``password`` for basic auth).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from flowhawk.errors import FlowhawkError

DEFAULT_CONFIG = Path("flowhawk.yaml")


class ConfigError(FlowhawkError):
    pass


def data_dir() -> Path:
    path = Path(os.environ.get("FLOWHAWK_HOME") or user_data_dir("flowhawk"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Settings:
    database_url: str | None = None
    storage_path: Path = field(default_factory=lambda: data_dir() / "storage")
    plugin_defaults: list[dict[str, Any]] = field(default_factory=list)
    server_username: str | None = None
    server_password: str | None = None
    config_file: Path | None = None

    @property
    def uses_embedded(self) -> bool:
        return not self.database_url


def load_settings(config: Path | None = None) -> Settings:
    """Read the config file (explicit, else ./flowhawk.yaml when present) and the environment."""
    path = config
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    raw: dict[str, Any] = {}
    if path is not None:
        if not Path(path).exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = YAML(typ="safe").load(Path(path).read_text())
        except YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config file must be a mapping")
        unknown = set(loaded) - {"database", "storage", "pluginDefaults", "server"}
        if unknown:
            raise ConfigError(f"{path}: unknown key(s): {', '.join(sorted(unknown))}")
        raw = loaded
    settings = Settings(config_file=Path(path) if path else None)
    settings.database_url = os.environ.get("FLOWHAWK_DATABASE_URL") or raw.get("database") or None
    storage = os.environ.get("FLOWHAWK_STORAGE") or raw.get("storage")
    if storage:
        base = Path(path).parent if path and not Path(storage).is_absolute() else Path()
        settings.storage_path = (base / storage).resolve()
    defaults = raw.get("pluginDefaults") or []
    if not isinstance(defaults, list) or not all(isinstance(d, dict) for d in defaults):
        raise ConfigError(f"{path}: pluginDefaults must be a list of {{type, values, forced}}")
    for i, item in enumerate(defaults):
        if "type" not in item or not isinstance(item.get("values", {}), dict):
            raise ConfigError(f"{path}: pluginDefaults[{i}]: needs `type` and a `values` mapping")
    settings.plugin_defaults = defaults
    server = raw.get("server") or {}
    settings.server_username = os.environ.get("FLOWHAWK_USERNAME") or server.get("username")
    settings.server_password = os.environ.get("FLOWHAWK_PASSWORD") or server.get("password")
    return settings
