"""``histodiff canvases``: list and remove canvas stores left on disk.

``histodiff generate`` keeps a large canvas on disk beside the output, in a
hidden folder ``.histodiff-canvas-XXXXXXXX`` that it removes when it ends. A
killed run (SIGKILL, power cut) leaves it behind; the next ``generate`` into
the same folder removes stale ones, and these commands do it by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "canvases", help="list or remove canvas stores left by killed runs",
        description="List or remove the canvas stores (.histodiff-canvas-*) in a "
        "folder. Only folders napari-histodiff wrote (recognised by their "
        "attributes) are considered; a canvas is stale when the process that "
        "made it (its pid on this host) no longer runs. Canvases of other hosts "
        "are listed, never removed.")
    sub = parser.add_subparsers(dest="canvases_command", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="list the canvas stores in DIR")
    ls.add_argument("dir", help="folder to look in (e.g. the output's folder)")
    ls.set_defaults(func=run_list)
    clean = sub.add_parser("clean", help="remove the stale canvas stores in DIR")
    clean.add_argument("dir", help="folder to look in (e.g. the output's folder)")
    clean.set_defaults(func=run_clean)


def _folder(text: str) -> Path:
    folder = Path(text)
    if not folder.is_dir():
        raise InputError(f"dir: {folder} is not a folder; give the folder that "
                         "holds the output (and its .histodiff-canvas-* folders)")
    return folder


def run_list(args: argparse.Namespace) -> int:
    from ..sampling.canvases import find_canvases

    found = find_canvases(_folder(args.dir))
    if not found:
        print(f"no canvas stores in {args.dir}")
    for info in found:
        print(info.describe())
    return 0


def run_clean(args: argparse.Namespace) -> int:
    import shutil

    from ..sampling.canvases import find_canvases

    found = find_canvases(_folder(args.dir))
    removed = 0
    for info in found:
        if info.state == "stale":
            shutil.rmtree(info.path)
            removed += 1
            print(f"removed {info.describe()}")
        else:
            print(f"kept {info.describe()}")
    print(f"{removed} stale canvas store{'s' if removed != 1 else ''} removed from "
          f"{args.dir}")
    return 0
