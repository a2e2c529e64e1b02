"""Plugin settings: default model, device and synthesis options, persisted.

Inside napari (0.9+) the settings are the plugin's npe2 ``configurations``
(see ``napari.yaml``): they appear under File > Preferences and napari saves
them in ``<napari config dir>/napari-histodiff.yaml``. Where napari's plugin
settings are not available (older napari, scripts without napari) they are
kept in a small JSON file, ``<user config dir>/napari-histodiff/settings.json``
(the directory from platformdirs, else ``~/.config``); the environment
variable ``HISTODIFF_SETTINGS_FILE`` forces that JSON file to a given path.

Settings are read and written as a flat dict with the keys of
:data:`DEFAULTS`. This module imports neither Qt nor napari at import time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .defaults import DEFAULT_GUIDANCE
from .schedulers import DEFAULT_SCHEDULER, DEFAULT_STEPS

PLUGIN_NAME = "napari-histodiff"
ENV_FILE = "HISTODIFF_SETTINGS_FILE"

DEFAULTS: dict[str, Any] = {
    "model": "demo",
    "device": "auto",
    "guidance_scale": DEFAULT_GUIDANCE,
    "num_inference_steps": DEFAULT_STEPS,
    "scheduler": DEFAULT_SCHEDULER,
    "strategy": "random-shift",
    "window_batch": 8,
    "placement": "beside",
}

# flat key -> (configuration key, property key) in napari.yaml
NAPARI_KEYS: dict[str, tuple[str, str]] = {
    "model": ("model", "path"),
    "device": ("model", "device"),
    "guidance_scale": ("synthesis", "guidance_scale"),
    "num_inference_steps": ("synthesis", "num_inference_steps"),
    "scheduler": ("synthesis", "scheduler"),
    "strategy": ("synthesis", "strategy"),
    "window_batch": ("synthesis", "window_batch"),
    "placement": ("synthesis", "placement"),
}


def json_settings_path() -> Path:
    """The JSON fallback file (``HISTODIFF_SETTINGS_FILE`` overrides it)."""
    if os.environ.get(ENV_FILE):
        return Path(os.environ[ENV_FILE])
    try:
        from platformdirs import user_config_dir

        base = Path(user_config_dir(PLUGIN_NAME, appauthor=False))
    except ImportError:
        base = Path.home() / ".config" / PLUGIN_NAME
    return base / "settings.json"


class JsonSettings:
    """Settings in a JSON file; unknown keys and bad files fall back to defaults."""

    backend = "json"

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else json_settings_path()

    def load(self) -> dict[str, Any]:
        values = dict(DEFAULTS)
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return values
        if isinstance(stored, dict):
            values.update({k: v for k, v in stored.items() if k in DEFAULTS})
        return values

    def save(self, **values: Any) -> None:
        current = self.load()
        current.update({k: v for k, v in values.items() if k in DEFAULTS})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(current, indent=2) + "\n")
        except OSError:
            pass  # settings are a convenience; never fail the action for them


class NapariSettings:
    """The plugin's npe2 ``configurations``, through napari's plugin settings."""

    backend = "napari"

    def __init__(self) -> None:
        from napari.settings import get_plugin_settings

        self._model = get_plugin_settings(PLUGIN_NAME)

    def load(self) -> dict[str, Any]:
        values = dict(DEFAULTS)
        for key, (section, prop) in NAPARI_KEYS.items():
            try:
                values[key] = getattr(getattr(self._model, section), prop)
            except AttributeError:
                pass
        return values

    def save(self, **values: Any) -> None:
        for key, value in values.items():
            if key not in NAPARI_KEYS:
                continue
            section, prop = NAPARI_KEYS[key]
            try:
                setattr(getattr(self._model, section), prop, value)
            except (AttributeError, ValueError):
                pass  # a value the schema refuses is not remembered


def get_settings() -> JsonSettings | NapariSettings:
    """napari's plugin settings when available, else the JSON file."""
    if not os.environ.get(ENV_FILE):
        try:
            return NapariSettings()
        except Exception:  # napari missing, too old, or plugin not registered
            pass
    return JsonSettings()


def load_settings() -> dict[str, Any]:
    """The current settings as a flat dict (defaults for anything unset)."""
    return get_settings().load()


def save_settings(**values: Any) -> None:
    """Remember some settings (keys of :data:`DEFAULTS`)."""
    get_settings().save(**values)
