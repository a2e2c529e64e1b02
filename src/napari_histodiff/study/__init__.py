"""Reader studies: visual Turing tests of real against synthetic tissue.

An organiser creates a study folder from real and synthetic images
(:func:`create_study`), readers take it in napari or the terminal
(:class:`ReaderSession`), and the organiser writes the report
(:func:`write_report`). See ``docs/reader-studies.md``.

Modules: :mod:`.images` (reading RGB images), :mod:`.tiles` (tissue tiles),
:mod:`.designs` (what is asked), :mod:`.store` (the study folder),
:mod:`.create`, :mod:`.answers` (SQLite), :mod:`.session` (one reader),
:mod:`.stats`, :mod:`.analysis` and :mod:`.report`.

Nothing here imports Qt or napari.
"""

from .analysis import StudyResults, analyse, collect_answers
from .create import create_study
from .designs import DESIGNS
from .images import RGBImage, load_rgb, open_rgb
from .report import Report, write_report
from .session import Feedback, ReaderSession
from .store import Study, StudySettings, TruthKey

__all__ = [
    "DESIGNS",
    "Feedback",
    "RGBImage",
    "ReaderSession",
    "Report",
    "Study",
    "StudyResults",
    "StudySettings",
    "TruthKey",
    "analyse",
    "collect_answers",
    "create_study",
    "load_rgb",
    "open_rgb",
    "write_report",
]
