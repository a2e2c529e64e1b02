"""``histodiff study``: create, take, report and inspect reader studies."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ..errors import InputError

_EPILOG = """\
examples:
  histodiff study create my-study --real real/ --synthetic out.zarr -n 50 \\
      --tile-size 256 --training 5 --key-out my-study-key.json
  histodiff study take my-study --reader "A. Pathologist"
  histodiff study info my-study
  histodiff study report my-study --key my-study-key.json --out my-report
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``study`` command and its subcommands."""
    parser = subparsers.add_parser(
        "study",
        help="reader studies (visual Turing tests) of real vs synthetic tiles",
        description=(
            "Reader studies: show pathologists real and synthetic tiles, blinded "
            "and shuffled, record their answers safely, and report accuracy, "
            "sensitivity, specificity, agreement and time per case."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: _help(parser))
    _register_create(sub)
    _register_take(sub)
    _register_report(sub)
    _register_info(sub)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _register_create(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "create",
        help="sample tiles and write a blinded study folder",
        description=(
            "Sample tissue tiles from real and synthetic images and write a study "
            "folder. Every case is stored identically (uncompressed uint8 array, "
            "random id); the truth key goes to KEY (--key-out) or OUT/key/."
        ),
    )
    p.add_argument("out", metavar="OUT", help="study folder to create")
    p.add_argument(
        "--real",
        nargs="+",
        required=True,
        metavar="PATH",
        help="real images: PNG/TIFF/JPEG files, .zarr folders, or folders of them",
    )
    p.add_argument(
        "--synthetic",
        nargs="+",
        required=True,
        metavar="PATH",
        help="synthetic images (same kinds as --real)",
    )
    p.add_argument(
        "--design",
        choices=("single", "2afc", "rating"),
        default="single",
        help="single: real or synthetic + confidence; 2afc: which of two tiles "
        "is synthetic; rating: realism 1-5 (default: single)",
    )
    p.add_argument(
        "-n",
        "--tiles",
        type=int,
        default=50,
        metavar="N",
        help="tiles per side (pairs for 2afc) (default: 50)",
    )
    p.add_argument(
        "--tile-size",
        type=int,
        default=256,
        metavar="PX",
        help="tile edge in pixels (default: 256)",
    )
    p.add_argument(
        "--min-tissue",
        type=float,
        default=0.5,
        metavar="F",
        help="minimum tissue fraction of a tile, 0-1 (default: 0.5)",
    )
    p.add_argument(
        "--training",
        type=int,
        default=0,
        metavar="N",
        help="training tiles per side (pairs for 2afc), shown with "
        "feedback and never counted (default: 0)",
    )
    p.add_argument(
        "--allow-navigation",
        action="store_true",
        help="readers may go back to answered cases",
    )
    p.add_argument(
        "--allow-change",
        action="store_true",
        help="readers may change answers (needs --allow-navigation)",
    )
    p.add_argument(
        "--no-confidence", action="store_true", help="do not ask for a 1-5 confidence"
    )
    p.add_argument("--title", default="Reader study", help="title shown to readers")
    p.add_argument("--instructions", default="", help="instructions shown to readers")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the tile sampling (recorded in the key)",
    )
    p.add_argument(
        "--key-out",
        default=None,
        metavar="KEY",
        help="write the truth key here, outside the folder readers get (recommended)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT if it is a study without answers",
    )
    p.set_defaults(func=_create)


def _register_take(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "take",
        help="take a study in the terminal (headless reader)",
        description=(
            "Take a study without napari: each case is written to CASE_DIR/case.png "
            "(open it in any image viewer) and the answer is typed. Answers: "
            "'r 4' / 's 2' (real/synthetic, confidence), 'l 3' / 'r 5' (2afc: the "
            "synthetic side), '4' (rating); anything after is a comment. "
            "'b' back, 'f' forward, 'q' quit; stop any time and run again to resume."
        ),
    )
    p.add_argument("study", metavar="STUDY", help="study folder")
    p.add_argument("--reader", required=True, help="your name (the same name resumes)")
    p.add_argument("--training", action="store_true", help="take the training set")
    p.add_argument(
        "--case-dir",
        default=None,
        help="folder for case.png (default: a temporary folder)",
    )
    p.set_defaults(func=_take)


def _register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the statistics: CSV, Markdown and plots",
        description="Analyse the answers against the truth key and write a report.",
    )
    p.add_argument("study", metavar="STUDY", help="study folder")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder")
    p.add_argument(
        "--key",
        default=None,
        metavar="KEY",
        help="truth key (default: STUDY/key/truth.json)",
    )
    p.add_argument(
        "--answers",
        nargs="+",
        default=[],
        metavar="DB",
        help="answers from copies of the study taken elsewhere "
        "(answers.sqlite files or study folders)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty DIR"
    )
    p.set_defaults(func=_report)


def _register_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show a study's settings and readers' progress",
        description="Check a study folder and show its settings and progress.",
    )
    p.add_argument("study", metavar="STUDY", help="study folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)


# -- handlers -----------------------------------------------------------------
def _create(args: argparse.Namespace) -> int:
    from ..study import create_study

    study = create_study(
        args.out,
        args.real,
        args.synthetic,
        design=args.design,
        n=args.tiles,
        tile_size=args.tile_size,
        min_tissue=args.min_tissue,
        n_training=args.training,
        allow_navigation=args.allow_navigation,
        allow_change=args.allow_change,
        ask_confidence=False if args.no_confidence else None,
        title=args.title,
        instructions=args.instructions,
        seed=args.seed,
        key_path=args.key_out,
        overwrite=args.overwrite,
    )
    key = args.key_out or study.default_key_path
    print(
        f"created {study.design} study {study.path}: {len(study.case_ids())} "
        f"cases, {len(study.case_ids(True))} training cases"
    )
    print(f"truth key: {key}")
    if args.key_out is None:
        print(
            "note: the key is inside the folder; move key/ elsewhere before "
            "handing the folder to readers, and pass --key to `report`."
        )
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..study import Study
    from ..study.answers import AnswerDB

    study = Study.open(args.study)
    n_cases = len(study.case_ids())
    n_training = len(study.case_ids(True))
    with AnswerDB.open(study.answers_path, study.uid) as db:
        readers = [
            {
                "name": r.name,
                "mode": r.mode,
                "answered": len(db.answers(r.reader_id)),
                "cases": n_training if r.mode == "training" else n_cases,
                "updated": r.updated_at,
            }
            for r in db.readers()
        ]
    s = study.settings
    info = {
        "path": str(study.path),
        "title": s.title,
        "design": s.design,
        "cases": n_cases,
        "training_cases": n_training,
        "tile_size": s.tile_size,
        "allow_navigation": s.allow_navigation,
        "allow_change": s.allow_change,
        "ask_confidence": s.ask_confidence,
        "key_inside_folder": study.default_key_path.is_file(),
        "created": study.manifest.get("created"),
        "readers": readers,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['title']} ({study.path})")
    print(
        f"  design: {s.design}; {n_cases} cases of {s.tile_size} px; "
        f"{n_training} training cases"
    )
    print(
        f"  navigation: {'yes' if s.allow_navigation else 'no'}; changes: "
        f"{'yes' if s.allow_change else 'no'}; confidence asked: "
        f"{'yes' if s.ask_confidence else 'no'}"
    )
    print(
        "  truth key: "
        + (
            "inside the folder (key/)"
            if info["key_inside_folder"]
            else "kept elsewhere"
        )
    )
    if not readers:
        print("  readers: none yet")
    for r in readers:
        mark = " (training)" if r["mode"] == "training" else ""
        print(
            f"  reader {r['name']}{mark}: {r['answered']} of {r['cases']} answered, "
            f"last {r['updated']}"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..study import write_report

    report = write_report(
        args.study,
        args.out,
        key_path=args.key,
        extra_databases=args.answers,
        overwrite=args.overwrite,
        plots=not args.no_plots,
    )
    pooled = report.results.pooled
    print(f"report written to {report.folder} ({len(report.files)} files)")
    if report.results.design == "rating" and pooled.ratings is not None:
        print(
            f"pooled: {pooled.n} ratings, AUC {pooled.ratings.auc:.3f}, "
            f"Mann-Whitney p = {pooled.ratings.p_value:.3g}"
        )
    else:
        low, high = pooled.accuracy_ci
        print(
            f"pooled: accuracy {pooled.accuracy:.3f} (95% CI {low:.3f}-{high:.3f}) "
            f"over {pooled.n} answers, binomial p = {pooled.p_value:.3g}"
        )
    return 0


# -- terminal reader ------------------------------------------------------------
_KEYS = {
    "single": {"r": "real", "s": "synthetic"},
    "2afc": {"l": "left", "r": "right"},
    "rating": {str(k): str(k) for k in range(1, 6)},
}


def _save_case(pixels, folder: Path) -> Path:
    """Write the case as one PNG (pairs side by side, a grey gap between).

    The PNG is stored uncompressed (``compress_level=0``, no metadata), so
    every case of one size has the same byte count: a compressed file's size
    follows how well the pixels compress, which tells real from synthetic.
    It is written to a temporary sibling and renamed, so an image viewer
    never shows half a case.
    """
    import numpy as np
    from PIL import Image

    from ..study.files import temporary_sibling, writing

    tiles = list(pixels)
    if len(tiles) == 2:
        gap = np.full(
            (tiles[0].shape[0], max(8, tiles[0].shape[1] // 16), 3), 128, np.uint8
        )
        image = np.concatenate([tiles[0], gap, tiles[1]], axis=1)
    else:
        image = tiles[0]
    path = folder / "case.png"
    with writing(path, "case image", "--case-dir"):
        tmp = temporary_sibling(path, "tmp")
        try:
            Image.fromarray(image).save(tmp, format="PNG", compress_level=0)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _parse_answer(design: str, needs_confidence: bool, line: str):
    parts = line.split(maxsplit=2 if design != "rating" else 1)
    answer = _KEYS[design].get(parts[0].lower())
    if answer is None:
        raise InputError(f"{parts[0]!r} is not an answer here; type ? for help.")
    if design == "rating":
        return answer, None, parts[1] if len(parts) > 1 else ""
    confidence = parts[1] if len(parts) > 1 else None
    if confidence is not None and not confidence.isdigit():
        raise InputError(f"confidence {confidence!r} must be 1-5.")
    if confidence is None and needs_confidence:
        raise InputError("add a confidence 1-5 after the answer, e.g. 's 4'.")
    return answer, confidence, parts[2] if len(parts) > 2 else ""


def _prompt_help(design: str) -> str:
    answers = {
        "single": "r N = real, s N = synthetic (N = confidence 1-5)",
        "2afc": "l N = the LEFT tile is synthetic, r N = the RIGHT one (N = 1-5)",
        "rating": "1-5 = realism (1 clearly synthetic, 5 clearly real)",
    }[design]
    return f"{answers}; text after it is a comment; b back, f forward, q quit"


def _case_folder(case_dir: str | None) -> Path:
    """The folder for case.png, made and checked writable before anything else."""
    if case_dir is None:
        return Path(tempfile.mkdtemp(prefix="histodiff-case-"))
    from ..study.files import temporary_sibling, writing

    folder = Path(case_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(
            f"--case-dir {folder} exists and is not a folder; give a folder for "
            "case.png (it is made if missing)."
        )
    with writing(folder, "case folder", "--case-dir"):
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_sibling(folder / "case.png", "probe")
        probe.touch(exist_ok=False)
        probe.unlink()
    return folder


def _take(args: argparse.Namespace) -> int:
    from ..study import ReaderSession
    from ..study.designs import QUESTIONS

    folder = _case_folder(args.case_dir)
    with ReaderSession(args.study, args.reader, training=args.training) as session:
        settings = session.study.settings
        print(
            settings.title
            + (" (TRAINING: answers are not counted)" if session.training else "")
        )
        if settings.instructions:
            print(settings.instructions)
        print(QUESTIONS[session.design])
        print(_prompt_help(session.design))
        while True:
            if session.at_end:
                if session.finished:
                    print(f"all {session.n_cases} cases answered; thank you.")
                    if not session.can_go_back:
                        return 0
            else:
                path = _save_case(session.image(), folder)
                done = session.current_answer
                note = f" (answered: {done.answer})" if done else ""
                print(f"case {session.position + 1} of {session.n_cases}{note}: {path}")
            try:
                line = input("> ").strip()
            except EOFError:
                print()
                return 0
            if not line:
                continue
            command = line.lower()
            try:
                if command == "q":
                    return 0
                if command == "?":
                    print(_prompt_help(session.design))
                elif command == "b":
                    session.go_back()
                elif command == "f":
                    session.go_forward()
                else:
                    answer, confidence, comment = _parse_answer(
                        session.design, session.needs_confidence, line
                    )
                    feedback = session.submit(answer, confidence, comment)
                    print("saved")
                    if feedback is not None:
                        print(feedback.message)
            except InputError as exc:
                print(f"error: {exc}", file=sys.stderr)
