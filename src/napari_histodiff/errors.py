"""Exceptions with messages meant for people.

Every error raised for bad input names the argument and the value, and says
what to do. The CLI prints these messages without a traceback and exits with
a non-zero status; the napari widgets show them as notifications.
"""

from __future__ import annotations


class HistodiffError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(HistodiffError, ValueError):
    """An argument or a file given by the user cannot be used as it is."""


class UnknownLabelsError(InputError):
    """A mask holds label ids that are not classes of the model.

    Attributes
    ----------
    ids : list of int
        The unknown ids.
    box : (y0, y1, x0, x1)
        Bounding box of the pixels that hold them.
    pixels : int
        How many pixels hold them.
    """

    def __init__(self, message: str, ids, box, pixels: int):
        super().__init__(message)
        self.ids = list(ids)
        self.box = tuple(box)
        self.pixels = int(pixels)


class ModelFormatError(HistodiffError, ValueError):
    """A model directory is incomplete or inconsistent."""


class UnsafeCheckpointError(ModelFormatError):
    """A weights file that would have to be unpickled to be read."""


class DeviceError(HistodiffError, RuntimeError):
    """The requested compute device is not available."""


class OutputExistsError(HistodiffError, FileExistsError):
    """The output path exists and overwriting was not requested."""


class OutputNotOursError(OutputExistsError):
    """``--overwrite`` was asked for a path this project did not write."""


class OutputWriteError(HistodiffError, OSError):
    """An output cannot be written: missing or read-only folder, full disk."""


class ModelOutputError(HistodiffError, RuntimeError):
    """The model produced unusable output (NaN or infinite values)."""


class ResourceError(HistodiffError, MemoryError):
    """A run would need more memory or disk than this machine has."""
