"""Writing a study report: CSV tables, a Markdown summary and plots.

Files written to the output folder:

``answers.csv``        every current study answer joined with the truth
``summary.csv``        one row per reader and one ``pooled`` row
``confusion.csv``      truth x answer counts per reader and pooled
``by_confidence.csv``  accuracy per confidence level (single and 2afc)
``agreement.csv``      Cohen's kappa per pair of readers and Fleiss' kappa
``report.md``          the results in words and tables, with the plots
``*.png``              accuracy, accuracy by confidence, time, ratings

Empty cells in the CSV files mean "undefined" (e.g. sensitivity in a 2afc
study, or a proportion of zero answers). Text cells that a spreadsheet would
read as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) are prefixed with a single quote (OWASP's advice against CSV
injection); reader names, comments and titles are escaped in ``report.md``.

The report is written to a temporary folder next to the output folder and
renamed when complete; with ``overwrite`` an earlier report there is replaced
only then, and a folder holding other files is never touched.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._version import __version__
from ..errors import InputError, OutputExistsError
from .analysis import POOLED, StudyResults, analyse, collect_answers, truth_labels
from .designs import ANSWERS, DESIGN_TITLES, LEVELS
from .files import check_parent, is_within, replace_folder, temporary_sibling, writing
from .stats import wilson_interval
from .store import Study

REPORT_FILES = (
    "answers.csv",
    "summary.csv",
    "confusion.csv",
    "by_confidence.csv",
    "agreement.csv",
    "report.md",
)
PLOT_FILES = (
    "accuracy.png",
    "accuracy_by_confidence.png",
    "time_per_case.png",
    "ratings.png",
)

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Characters escaped with a backslash in Markdown text (after HTML escaping).
_MARKDOWN_SPECIAL = set("\\`*_{}[]()!|~")


@dataclass
class Report:
    """A written report: its results and the files written."""

    results: StudyResults
    folder: Path
    files: list[Path] = field(default_factory=list)


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return safe_cell(value)
    return value


def safe_cell(text: str) -> str:
    """A text cell that no spreadsheet runs as a formula (OWASP CSV injection)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return path


def _md(text: str) -> str:
    """Reader text safe in Markdown (tables included) and in HTML renderings.

    HTML is escaped (``<``, ``>``, ``&``), Markdown punctuation is
    backslash-escaped so that no link, image, emphasis or table cell can be
    made, and line breaks become spaces.
    """
    text = " ".join(str(text).splitlines())
    text = html.escape(text, quote=False)
    return "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in text)


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _fmt_p(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _fmt_ci(ci: tuple[float, float]) -> str:
    if any(math.isnan(v) for v in ci):
        return "–"
    return f"{ci[0]:.3f}–{ci[1]:.3f}"


# -- CSV tables ---------------------------------------------------------------
def _answers_csv(results: StudyResults, folder: Path) -> Path:
    header = [
        "reader",
        "case_id",
        "position",
        "answer",
        "confidence",
        "comment",
        "seconds",
        "answered_at",
        "revision",
        "truth",
        "correct",
        "sources",
    ]
    rows = [
        [
            r.reader,
            r.case_id,
            r.position,
            r.answer,
            r.confidence,
            r.comment,
            round(r.seconds, 3),
            r.answered_at,
            r.revision,
            r.truth,
            r.correct,
            r.sources,
        ]
        for r in results.rows
    ]
    return _write_csv(folder / "answers.csv", header, rows)


def _summary_csv(results: StudyResults, folder: Path) -> Path:
    header = [
        "reader",
        "n",
        "correct",
        "accuracy",
        "accuracy_ci_low",
        "accuracy_ci_high",
        "p_value",
        "sensitivity",
        "sensitivity_ci_low",
        "sensitivity_ci_high",
        "specificity",
        "specificity_ci_low",
        "specificity_ci_high",
        "time_mean_s",
        "time_median_s",
        "rating_u",
        "rating_p_value",
        "rating_auc",
    ]
    rows = []
    for g in results.groups:
        ratings = g.ratings
        rows.append(
            [
                g.name,
                g.n,
                g.correct if results.design != "rating" else None,
                g.accuracy,
                *g.accuracy_ci,
                g.p_value,
                g.sensitivity,
                *g.sensitivity_ci,
                g.specificity,
                *g.specificity_ci,
                g.time_mean,
                g.time_median,
                ratings.u if ratings else None,
                ratings.p_value if ratings else None,
                ratings.auc if ratings else None,
            ]
        )
    return _write_csv(folder / "summary.csv", header, rows)


def _confusion_csv(results: StudyResults, folder: Path) -> Path:
    rows = [
        [g.name, truth, answer, count]
        for g in results.groups
        for (truth, answer), count in g.confusion.items()
    ]
    return _write_csv(
        folder / "confusion.csv", ["reader", "truth", "answer", "count"], rows
    )


def _confidence_csv(results: StudyResults, folder: Path) -> Path:
    rows = []
    for g in results.groups:
        for level, (n, correct) in sorted(g.by_confidence.items()):
            low, high = wilson_interval(correct, n)
            rows.append([g.name, level, n, correct, correct / n, low, high])
    header = ["reader", "confidence", "n", "correct", "accuracy", "ci_low", "ci_high"]
    return _write_csv(folder / "by_confidence.csv", header, rows)


def _agreement_csv(results: StudyResults, folder: Path) -> Path:
    a = results.agreement
    rows = [[x, y, n, "cohen", k] for x, y, n, k in a.pairs]
    if len(a.readers) >= 2:
        rows.append(["; ".join(a.readers), "", a.n_cases, "fleiss", a.fleiss])
    header = ["reader_a", "reader_b", "n_cases", "statistic", "kappa"]
    return _write_csv(folder / "agreement.csv", header, rows)


# -- plots --------------------------------------------------------------------
def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _plot_accuracy(results: StudyResults, folder: Path) -> Path:
    return _save(accuracy_figure(results), folder / "accuracy.png")


def accuracy_figure(results: StudyResults):
    """Accuracy per reader and pooled, with Wilson intervals and chance."""
    from matplotlib.figure import Figure

    groups = results.groups
    fig = Figure(figsize=(1.2 + 0.8 * len(groups), 3.6))
    ax = fig.subplots()
    xs = list(range(len(groups)))
    values = [g.accuracy for g in groups]
    low = [g.accuracy - g.accuracy_ci[0] for g in groups]
    high = [g.accuracy_ci[1] - g.accuracy for g in groups]
    colours = ["tab:blue"] * len(results.readers) + ["tab:gray"]
    ax.bar(xs, values, color=colours, yerr=[low, high], capsize=4)
    ax.axhline(0.5, color="tab:red", linestyle="--", label="chance")
    ax.set_xticks(xs, [g.name for g in groups], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% Wilson CI)")
    # above the axes: inside them it would cover a bar whatever the corner
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), frameon=False,
              borderaxespad=0.0)
    fig.tight_layout()
    return fig


def _plot_confidence(results: StudyResults, folder: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.subplots()
    for g in results.groups:
        levels = sorted(g.by_confidence)
        acc = [g.by_confidence[k][1] / g.by_confidence[k][0] for k in levels]
        style = {"color": "black", "linewidth": 2.5} if g.name == POOLED else {}
        ax.plot(levels, acc, marker="o", label=g.name, **style)
    ax.axhline(0.5, color="tab:red", linestyle="--")
    ax.set_xticks(LEVELS)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize="small")
    return _save(fig, folder / "accuracy_by_confidence.png")


def _plot_time(results: StudyResults, folder: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 + 0.8 * len(results.readers), 3.6))
    ax = fig.subplots()
    data = [
        [r.seconds for r in results.rows if r.reader == g.name] for g in results.readers
    ]
    ax.boxplot(data)
    ax.set_xticks(
        range(1, len(data) + 1),
        [g.name for g in results.readers],
        rotation=30,
        ha="right",
    )
    ax.set_ylabel("seconds per case")
    return _save(fig, folder / "time_per_case.png")


def _plot_ratings(results: StudyResults, folder: Path) -> Path:
    from matplotlib.figure import Figure

    pooled = results.pooled
    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.subplots()
    width = 0.38
    for offset, label, colour in (
        (-width / 2, "real", "tab:blue"),
        (width / 2, "synthetic", "tab:orange"),
    ):
        counts = [pooled.confusion[(label, str(k))] for k in LEVELS]
        total = sum(counts) or 1
        ax.bar(
            [k + offset for k in LEVELS],
            [c / total for c in counts],
            width,
            label=label,
            color=colour,
        )
    ax.set_xticks(LEVELS)
    ax.set_xlabel("realism rating (1 = clearly synthetic, 5 = clearly real)")
    ax.set_ylabel("share of ratings")
    ax.legend()
    return _save(fig, folder / "ratings.png")


# -- Markdown -----------------------------------------------------------------
def _markdown(study: Study, results: StudyResults, plots: list[Path]) -> str:
    design = results.design
    n_cases = len(study.case_ids())
    lines = [
        f"# Reader study report: {_md(study.settings.title)}",
        "",
        f"- Design: {design} ({DESIGN_TITLES[design]})",
        f"- Cases: {n_cases}, tiles of {study.settings.tile_size} px",
        f"- Readers: {len(results.readers)}; answers: {len(results.rows)} "
        "(training answers are never included)",
        f"- Study id: `{study.uid}`; report by napari-histodiff {__version__}",
        "",
        "## Readers",
        "",
        "| reader | answered | of | mean s | median s |",
        "|---|---:|---:|---:|---:|",
    ]
    for g in results.groups:
        lines.append(
            f"| {_md(g.name)} | {g.n} | {n_cases if g.name != POOLED else '–'} | "
            f"{_fmt(g.time_mean, 1)} | {_fmt(g.time_median, 1)} |"
        )
    if design != "rating":
        lines += [
            "",
            "## Accuracy",
            "",
            "Accuracy near 0.5 means the readers could not tell real from "
            "synthetic. p: exact two-sided binomial test against 0.5; pooled "
            "p-values treat all answers as independent. Sensitivity: synthetic "
            "tiles called synthetic; specificity: real tiles called real.",
            "",
        ]
        single = design == "single"
        header = "| reader | n | correct | accuracy | 95% CI | p |"
        rule = "|---|---:|---:|---:|---|---:|"
        if single:
            header += " sensitivity (95% CI) | specificity (95% CI) |"
            rule += "---|---|"
        lines += [header, rule]
        for g in results.groups:
            line = (
                f"| {_md(g.name)} | {g.n} | {g.correct} | {_fmt(g.accuracy)} | "
                f"{_fmt_ci(g.accuracy_ci)} | {_fmt_p(g.p_value)} |"
            )
            if single:
                line += (
                    f" {_fmt(g.sensitivity)} ({_fmt_ci(g.sensitivity_ci)}) |"
                    f" {_fmt(g.specificity)} ({_fmt_ci(g.specificity_ci)}) |"
                )
            lines.append(line)
        if not single:
            lines += [
                "",
                "Every pair holds one real and one synthetic tile, so sensitivity "
                "and specificity do not apply; the confusion matrices below show "
                "any preference for one side.",
            ]
        lines += [
            "",
            "## Accuracy by confidence",
            "",
            "| reader | " + " | ".join(f"conf. {k}" for k in LEVELS) + " |",
            "|---|" + "---:|" * len(LEVELS),
        ]
        for g in results.groups:
            cells = []
            for k in LEVELS:
                if k in g.by_confidence:
                    n, c = g.by_confidence[k]
                    cells.append(f"{c / n:.2f} ({c}/{n})")
                else:
                    cells.append("–")
            lines.append(f"| {_md(g.name)} | " + " | ".join(cells) + " |")
    else:
        lines += [
            "",
            "## Realism ratings",
            "",
            "Counts of ratings 1 (clearly synthetic) to 5 (clearly real). "
            "U, p: two-sided Mann-Whitney U test between real and synthetic "
            "ratings; AUC: chance that a real tile is rated more realistic than "
            "a synthetic one (0.5 = no difference).",
            "",
            "| reader | tiles | "
            + " | ".join(str(k) for k in LEVELS)
            + " | mean | U | p | AUC |",
            "|---|---|" + "---:|" * (len(LEVELS) + 4),
        ]
        for g in results.groups:
            for label in ("real", "synthetic"):
                counts = [g.confusion[(label, str(k))] for k in LEVELS]
                total = sum(counts)
                mean = (
                    sum(k * c for k, c in zip(LEVELS, counts, strict=True)) / total
                    if total
                    else float("nan")
                )
                r = g.ratings
                stats_cells = (
                    f"{_fmt(r.u, 1)} | {_fmt_p(r.p_value)} | {_fmt(r.auc)}"
                    if label == "real" and r
                    else " | | "
                )
                lines.append(
                    f"| {_md(g.name)} | {label} | "
                    + " | ".join(map(str, counts))
                    + f" | {_fmt(mean, 2)} | {stats_cells} |"
                )
    truths = truth_labels(design)
    truth_title = "synthetic side" if design == "2afc" else "truth"
    if design != "rating":  # for ratings the table above is the matrix
        lines += ["", "## Confusion matrices", ""]
    for g in results.groups if design != "rating" else []:
        lines += [
            f"**{_md(g.name)}**",
            "",
            f"| {truth_title} \\ answer | " + " | ".join(ANSWERS[design]) + " |",
            "|---|" + "---:|" * len(ANSWERS[design]),
        ]
        for t in truths:
            lines.append(
                f"| {t} | "
                + " | ".join(str(g.confusion[(t, a)]) for a in ANSWERS[design])
                + " |"
            )
        lines.append("")
    a = results.agreement
    lines += ["", "## Agreement between readers", ""]
    if len(a.readers) < 2:
        lines.append("Fewer than two readers answered: no agreement to compute.")
    else:
        lines += [
            f"Fleiss' kappa over {len(a.readers)} readers and the {a.n_cases} "
            f"cases all of them answered: **{_fmt(a.fleiss)}**.",
            "",
            "| reader A | reader B | shared cases | Cohen's kappa |",
            "|---|---|---:|---:|",
        ]
        lines += [
            f"| {_md(x)} | {_md(y)} | {n} | {_fmt(k)} |" for x, y, n, k in a.pairs
        ]
        if design == "rating":
            lines += ["", "Ratings are compared as five nominal categories."]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += [
        "",
        "## Files",
        "",
        "`answers.csv` (every answer with the truth and the tile sources), "
        "`summary.csv`, `confusion.csv`, `by_confidence.csv`, `agreement.csv`.",
        "",
    ]
    return "\n".join(lines)


def write_report(
    study: Study | str | Path,
    out: str | Path,
    *,
    key_path: str | Path | None = None,
    extra_databases: Sequence[str | Path] = (),
    overwrite: bool = False,
    plots: bool = True,
) -> Report:
    """Analyse a study and write the report files.

    Parameters
    ----------
    study : Study, str or Path
        The study (folder).
    out : str or Path
        Output folder (created, outside the study folder).
    key_path : str or Path, optional
        The truth key, if it was written outside the study folder.
    extra_databases : sequence of str or Path
        Answers from copies of the study taken elsewhere (``answers.sqlite``
        files or study folders).
    overwrite : bool
        Replace an earlier report in ``out`` (a folder holding other files
        is never replaced).
    plots : bool
        Draw the PNG plots (matplotlib).

    Returns
    -------
    Report

    Raises
    ------
    InputError
        If the study, key or answers cannot be used, or nobody has answered.
    OutputExistsError
        If ``out`` holds files and ``overwrite`` is false.
    """
    study = study if isinstance(study, Study) else Study.open(study)
    if not isinstance(out, (str, os.PathLike)) or str(out).strip() == "":
        raise InputError(f"out={out!r} (--out) must be the path of a report folder.")
    if isinstance(extra_databases, (str, os.PathLike)):
        raise InputError(
            f"extra_databases={str(extra_databases)!r} must be a list of "
            "answers.sqlite files or study folders, not one path; wrap it in a list."
        )
    folder = Path(out)
    replace = check_report_output(folder, study, overwrite)
    key = study.read_key(key_path)
    rows = collect_answers(study, key, extra_databases)
    if not rows:
        raise InputError(
            f"no reader has answered study {study.path} yet (training answers "
            "do not count); there is nothing to report."
        )
    results = analyse(study.design, rows)
    with writing(folder, "report folder", "--out"):
        folder.absolute().parent.mkdir(parents=True, exist_ok=True)
        staging = temporary_sibling(folder.absolute(), "writing")
        staging.mkdir()
    try:
        with writing(folder, "report folder", "--out"):
            files = [
                _answers_csv(results, staging),
                _summary_csv(results, staging),
                _confusion_csv(results, staging),
                _confidence_csv(results, staging),
                _agreement_csv(results, staging),
            ]
            drawn: list[Path] = []
            if plots:
                if study.design == "rating":
                    drawn.append(_plot_ratings(results, staging))
                else:
                    drawn.append(_plot_accuracy(results, staging))
                    drawn.append(_plot_confidence(results, staging))
                drawn.append(_plot_time(results, staging))
            markdown = staging / "report.md"
            markdown.write_text(_markdown(study, results, drawn), encoding="utf-8")
            replace_folder(staging, folder, replace=replace)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = [folder / f.name for f in [*files, markdown, *drawn]]
    return Report(results, folder, written)


def check_report_output(folder: Path, study: Study, overwrite: bool) -> bool:
    """Refuse an output folder the report may not be written to.

    Returns whether an existing report folder is to be replaced.

    Raises
    ------
    InputError
        If ``folder`` lies inside the study folder (the report holds the
        truth, which readers must not see) or is not a folder.
    OutputExistsError
        If ``folder`` holds files and ``overwrite`` is false, or holds files
        that are not those of a report (never replaced).
    """
    if is_within(folder, study.path):
        raise InputError(
            f"report folder (--out) {folder} lies inside the study folder "
            f"{study.path}; the report holds the truth, which readers must not "
            "see. Choose a folder outside the study."
        )
    if not folder.exists() and not folder.is_symlink():
        check_parent(folder, "report folder", "--out")
        return False
    if folder.is_symlink() or not folder.is_dir():
        raise InputError(
            f"report folder (--out) {folder} exists and is not a folder; choose "
            "a new folder for the report."
        )
    try:
        names = {entry.name for entry in folder.iterdir()}
    except OSError as exc:
        raise InputError(
            f"report folder (--out) {folder} cannot be read ({exc.strerror}); "
            "choose another folder."
        ) from exc
    if not names:
        return False
    if not overwrite:
        raise OutputExistsError(
            f"output folder (--out) {folder} is not empty; choose another or pass "
            "overwrite (--overwrite)."
        )
    others = sorted(names - set(REPORT_FILES) - set(PLOT_FILES))
    if others or "report.md" not in names:
        shown = ", ".join(others[:3]) or "no report.md"
        raise OutputExistsError(
            f"output folder (--out) {folder} holds files that are not a study "
            f"report ({shown}); it is not replaced even with overwrite. Choose "
            "another folder."
        )
    return True
