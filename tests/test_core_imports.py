"""The core imports without Qt or napari; napari discovers the plugin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from _helpers import ROOT

CHECK = """
import importlib, pkgutil, sys
import napari_histodiff
skip = ("_widgets", "_reader", "_writer", "_sample_data", "__main__")
names = [m.name for m in pkgutil.walk_packages(napari_histodiff.__path__,
                                               "napari_histodiff.")
         if not any(part in skip for part in m.name.split("."))]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules
             if m.split(".")[0] in ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6",
                                    "napari", "magicgui", "vispy"))
assert not bad, bad
print(len(names))
"""


def test_core_imports_without_qt_or_napari():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run([sys.executable, "-c", CHECK], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) >= 15  # really walked the core modules


def test_package_import_is_light():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    code = ("import sys, napari_histodiff; "
            "print(sorted(m for m in ('torch','diffusers','dask','napari') "
            "if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_npe2_manifest_validates():
    npe2 = os.path.join(os.path.dirname(sys.executable), "npe2")
    if not os.path.exists(npe2):
        pytest.skip("npe2 command not installed next to this python")
    res = subprocess.run([npe2, "validate", "napari-histodiff"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in res.stdout


def test_plugin_manifest_is_discovered():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-histodiff")
    assert manifest.display_name == "HistoDiff"
    assert any(r.command == "napari-histodiff.get_reader"
               for r in manifest.contributions.readers)


def test_cli_help_does_not_import_torch():
    """Every ``histodiff`` command builds the full parser first: importing the
    pipelines there cost about 5 s per command."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    code = ("import sys; from napari_histodiff.cli import build_parser; "
            "build_parser(); "
            "print(sorted(m for m in ('torch','diffusers','dask','zarr','napari') "
            "if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
