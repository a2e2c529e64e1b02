"""Captions: composition levels and order, mask shares, the reports CSV,
extractive truncation with exact dropped counts, the modes and statistics."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histodiff.errors import InputError
from napari_histodiff.training import captions as cap

NAMES = ["unknown", "dab", "nuclei", "background"]


# ----------------------------------------------------------------- composition

def test_levels_and_order():
    text = cap.composition_caption(
        {"dab": 0.42, "nuclei": 0.08, "background": 0.3, "tissue": 0.2})
    # by share, largest first: 0.42 and 0.30 are high (>= 0.30), 0.2 some
    assert text == "high dab; high background; some tissue; low nuclei"


def test_thresholds_are_inclusive_and_zero_is_left_out():
    levels = cap.DEFAULT_LEVELS
    assert cap.level_of(0.30, levels) == "high"
    assert cap.level_of(0.2999, levels) == "some"
    assert cap.level_of(0.10, levels) == "some"
    assert cap.level_of(1e-6, levels) == "low"
    assert cap.level_of(0.0, levels) is None
    assert cap.composition_caption({"dab": 0.0, "nuclei": 1.0}) == "high nuclei"


def test_ties_by_name_and_skip_unknown():
    text = cap.composition_caption({"zeta": 0.2, "alpha": 0.2, "unknown": 0.6})
    assert text == "some alpha; some zeta"
    assert cap.composition_caption({"unknown": 1.0}) == ""


def test_custom_levels_and_below_lowest_level():
    levels = ((0.5, "mostly"), (0.2, "partly"))
    text = cap.composition_caption({"a": 0.6, "b": 0.25, "c": 0.15}, levels)
    assert text == "mostly a; partly b"  # c is under every level


@pytest.mark.parametrize("levels", [
    (), ((0.1, "low"), (0.3, "high")), ((1.5, "high"),), ((0.3, ""),),
    ((0.3, "x"), (0.1, "x")), ((0.3, "a;b"),), ((0.3, "high"), (0.3, "some")),
])
def test_bad_levels(levels):
    with pytest.raises(InputError, match="levels"):
        cap.composition_caption({"dab": 0.5}, levels)


def test_bad_fraction():
    with pytest.raises(InputError, match="'dab'.*1.5"):
        cap.composition_caption({"dab": 1.5})


def test_mask_fractions():
    mask = np.zeros((4, 5), np.uint8)
    mask[:2] = 1
    mask[2, :2] = 2
    shares = cap.mask_fractions(mask, NAMES)
    assert shares == {"unknown": 8 / 20, "dab": 10 / 20, "nuclei": 2 / 20,
                      "background": 0.0}
    # shares are of the whole tile: unknown pixels count, but get no clause
    assert cap.composition_caption(shares) == "high dab; some nuclei"


def test_mask_fractions_refuses():
    with pytest.raises(InputError, match=r"\[4, 7\]"):
        cap.mask_fractions(np.array([[0, 4], [7, 1]]), NAMES)
    with pytest.raises(InputError, match=r"\[-1\]"):
        cap.mask_fractions(np.array([[0, -1]]), NAMES)
    with pytest.raises(InputError, match="float"):
        cap.mask_fractions(np.zeros((2, 2), np.float32), NAMES)
    with pytest.raises(InputError, match="no pixels"):
        cap.mask_fractions(np.zeros((0, 3), np.uint8), NAMES)


# --------------------------------------------------------------------- reports

def write(tmp_path, text, name="reports.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_report_csv(tmp_path):
    path = write(tmp_path, "id,image,text\n1,a.png,\"Invasive  carcinoma.\n"
                 "Grade 2.\"\n2,./sub/b.png,Benign\n3,c,Stem only\n\n")
    assert cap.read_report_csv(path) == {
        "a.png": "Invasive carcinoma. Grade 2.", "sub/b.png": "Benign",
        "c": "Stem only"}


def test_read_report_csv_bom_and_header_case(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes("\ufeffImage, Text\nä.png,Größe\n".encode())
    assert cap.read_report_csv(path) == {"ä.png": "Größe"}


@pytest.mark.parametrize("text, match", [
    ("", "is empty"),
    ("image,text\n", "no rows"),
    ("image,report\na.png,x\n", "no text column"),
    ("file,text\na.png,x\n", "no image column"),
    ("image,text\na.png,x\nb.png,y\na.png,z\n", "line 4.*already has a row.*line 2"),
    ("image,text\na.png,x\n../x.png,y\n", "line 3.*'../x.png' leaves"),
    ("image,text\n/abs/x.png,y\n", "line 2.*leaves"),
    ("image,text\nC:\\x.png,y\n", "line 2.*leaves"),
    ("image,text\na.png,   \n", "line 2.*no text"),
    ("image,text\n,abc\n", "line 2.*empty"),
    ("image,text\na.png\n", "line 2.*cells"),
])
def test_read_report_csv_refuses(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=match) as info:
        cap.read_report_csv(path, argname="reports")
    assert str(info.value).startswith("reports: ")


def test_read_report_csv_missing_and_not_utf8(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        cap.read_report_csv(tmp_path / "nope.csv")
    path = tmp_path / "latin.csv"
    path.write_bytes("image,text\na.png,Gr\xf6\xdfe\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        cap.read_report_csv(path)


# ------------------------------------------------------------------ truncation

def test_word_count_tokens_splits_punctuation():
    assert cap.word_count_tokens("high dab; low nuclei") == 5
    assert cap.word_count_tokens("Grade 2/3, ER+.") == 8
    assert cap.word_count_tokens("") == 0


def test_split_sentences():
    assert cap.split_sentences("One. Two!  Three? four\nfive. 2.5 mm") == [
        "One.", "Two!", "Three?", "four five.", "2.5 mm"]


def test_truncate_keeps_composition_then_whole_sentences():
    comp = "high dab; low nuclei"                 # 5 tokens
    report = "Invasive carcinoma. Grade two of three. Margins clear."
    # sentences: 3, 5, 3 tokens; the joins "; " add 1
    full, dropped = cap.truncate_caption(comp, report, None)
    assert full == f"{comp}; {report}" and dropped == 0
    text, dropped = cap.truncate_caption(comp, report, 9)
    assert text == "high dab; low nuclei; Invasive carcinoma."
    assert cap.word_count_tokens(text) == 9
    assert dropped == 17 - 9
    # the second sentence does not fit: the third (which would) is not added
    text, dropped = cap.truncate_caption(comp, report, 13)
    assert text == "high dab; low nuclei; Invasive carcinoma."
    assert dropped == 8
    text, dropped = cap.truncate_caption(comp, report, 14)
    assert text == "high dab; low nuclei; Invasive carcinoma. Grade two of three."
    assert dropped == 3
    assert cap.truncate_caption(comp, report, 17) == (f"{comp}; {report}", 0)


def test_truncate_cuts_composition_at_clauses_then_words():
    comp = "high dab; some nuclei; low background"
    text, dropped = cap.truncate_caption(comp, "Carcinoma.", 6)
    assert (text, dropped) == ("high dab; some nuclei", 6)
    text, dropped = cap.truncate_caption(comp, "", 2)
    assert (text, dropped) == ("high dab", 6)
    text, dropped = cap.truncate_caption("very high dab", "", 2)
    assert (text, dropped) == ("very high", 1)


def test_truncate_report_only_and_token_counter():
    def chars(text):  # a counter that is not the word split
        return len(text.replace(" ", ""))

    text, dropped = cap.truncate_caption("", "Abc. Defg. Hi.", 9, chars)
    assert text == "Abc. Defg."
    assert dropped == chars("Abc. Defg. Hi.") - chars(text) == 3
    with pytest.raises(InputError, match="max_tokens"):
        cap.truncate_caption("a", "b", 0)


# ---------------------------------------------------------------------- a set

def masks():
    dab = np.ones((4, 4), np.uint8)
    mixed = np.array([[1, 1, 2, 3]] * 4, np.uint8)
    return dab, mixed


def test_build_captions_modes():
    dab, mixed = masks()
    reports = {"a.png": "Carcinoma. Grade two.", "b": "Benign.", "zz.png": "x"}
    items = [("a.png", dab), ("sub/b.png", mixed)]
    comp, unused = cap.build_captions(items, NAMES, reports, None, "composition")
    assert [c.text for c in comp] == [
        "high dab", "high dab; some background; some nuclei"]
    assert [c.report for c in comp] == ["", ""]
    assert unused == ["zz.png"]
    rep, _ = cap.build_captions(items, NAMES, reports, None, "report")
    assert [c.text for c in rep] == ["Carcinoma. Grade two.", "Benign."]
    assert rep[0].composition == ""
    both, _ = cap.build_captions(items, NAMES, reports, 5, "both")
    assert both[0].text == "high dab; Carcinoma."
    assert both[0].dropped_tokens == 3 and both[0].key == "a.png"
    assert both[0].composition == "high dab"
    assert both[0].report == "Carcinoma. Grade two."
    assert both[1].text == "high dab; some background"
    assert both[1].dropped_tokens == 6


def test_build_captions_refuses():
    dab, _ = masks()
    items = [(f"t{i}.png", dab) for i in range(8)]
    with pytest.raises(InputError, match=r"8 images.*t0.png.*t4.png and 3 more"):
        cap.build_captions(items, NAMES, {"other.png": "x"}, None, "report")
    with pytest.raises(InputError, match="needs the reports CSV"):
        cap.build_captions(items, NAMES, None, None, "both")
    with pytest.raises(InputError, match="no mask.*b.png"):
        cap.build_captions([("a.png", dab), ("b.png", None)], NAMES, None, None,
                           "composition")
    with pytest.raises(InputError, match="mode: 'all'"):
        cap.build_captions(items, NAMES, None, None, "all")


def test_both_without_mask_is_report_only():
    captions, unused = cap.build_captions([("a.png", None)], NAMES,
                                          {"a": "Benign."}, None, "both")
    assert captions[0].text == "Benign." and unused == []


def test_caption_stats():
    dab, mixed = masks()
    captions, _ = cap.build_captions([("a", dab), ("b", mixed)], NAMES, None, 3,
                                     "composition")
    stats = cap.caption_stats(captions)
    assert stats["count"] == 2
    assert stats["max_tokens"] == 2 and stats["mean_tokens"] == 2.0
    assert stats["truncated"] == 1 and stats["share_truncated"] == 0.5
    assert stats["dropped_tokens"] == 6
    assert cap.caption_stats([])["count"] == 0
