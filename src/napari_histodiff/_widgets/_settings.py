"""Where the widgets keep their settings: napari's plugin settings, else JSON.

The keys, defaults and the JSON store are in :mod:`napari_histodiff.settings`;
this module adds napari's npe2 ``configurations`` (File > Preferences) as the
store inside napari.
"""

from __future__ import annotations

import os
from typing import Any

try:
    from napari.settings import get_plugin_settings
except ImportError:  # a napari without plugin settings: the JSON store is used
    get_plugin_settings = None

from ..settings import DEFAULTS, ENV_FILE, NAPARI_KEYS, PLUGIN_NAME, JsonSettings


class NapariSettings:
    """The plugin's npe2 ``configurations``, through napari's plugin settings."""

    backend = "napari"

    def __init__(self) -> None:
        if get_plugin_settings is None:
            raise RuntimeError("this napari has no plugin settings")
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
