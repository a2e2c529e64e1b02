"""Plugin settings: default model, device and synthesis options, persisted.

Inside napari (0.9+) the settings are the plugin's npe2 ``configurations``
(see ``napari.yaml``): they appear under File > Preferences and napari saves
them in ``<napari config dir>/napari-histodiff.yaml``. Where napari's plugin
settings are not available (older napari, scripts without napari) they are
kept in a small JSON file, ``<user config dir>/napari-histodiff/settings.json``
(the directory from platformdirs, else ``~/.config``); the environment
variable ``HISTODIFF_SETTINGS_FILE`` forces that JSON file to a given path.

Settings are read and written as a flat dict with the keys of
:data:`DEFAULTS`. This module holds the defaults, the mapping to napari's
configuration keys and the JSON store; it imports neither Qt nor napari. The
napari store and the choice between the two live with the widgets, in
:mod:`napari_histodiff._widgets._settings`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .defaults import DEFAULT_GUIDANCE, DEFAULT_SCHEDULER, DEFAULT_STEPS

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
