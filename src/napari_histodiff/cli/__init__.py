"""The ``histodiff`` command.

Each subcommand lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``func`` to the handler. Handlers
receive the parsed arguments and return an exit status. Errors this package
raises on purpose (:class:`napari_histodiff.errors.HistodiffError`) are
printed as one clear message with exit status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import HistodiffError

# Module names under napari_histodiff.cli, in the order --help lists them.
_SUBCOMMAND_MODULES = (
    "model",
    "generate",
    "generate_many",
    "generate_mask",
    "label",
    "export",
    "train",
    "augment",
    "metrics",
    "study",
    "bench",
    "demo",
    "canvases",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="histodiff",
        description=(
            "Mask-guided diffusion synthesis of histology images, seamless at "
            "any size, and reader studies of how real they look."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HistodiffError as exc:
        print(f"histodiff {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"histodiff {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `histodiff model info demo | head`
        # the reader went away: send what is still buffered nowhere, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
