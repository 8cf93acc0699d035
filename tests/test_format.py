"""The three-stage text format: exact strings against the reference, answer extraction, and the inverse parsers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.records import Question

Q = Question(id="q1", stem="Where do you keep milk?", answer="B",
             options=(("A", "shelf"), ("B", "fridge"), ("C", "oven")))
BLOCK = "Where do you keep milk?\n(A) shelf (B) fridge (C) oven"
ANALYSES = [("A", "a shelf is warm"), ("B", "a fridge keeps it cold."), ("C", "an oven heats it")]
ANALYSES_TEXT = "For option A, a shelf is warm. For option B, a fridge keeps it cold. For option C, an oven heats it."


# ----- builders: exact strings ---------------------------------------------------------------------------------

def test_recall_input_exact():
    assert fmt.recall_input(Q) == f"{BLOCK}\nRecall:"


def test_analyze_input_exact_with_and_without_recall():
    assert fmt.analyze_input(Q, "B", "Milk spoils when warm") == \
        f"{BLOCK}\nRecall: Milk spoils when warm.\nAnalyze: For option B,"
    assert fmt.analyze_input(Q, "C", None) == f"{BLOCK}\nAnalyze: For option C,"


@pytest.mark.parametrize("recall, analyses, expected", [
    # recall_analyze_summarize
    ("Milk spoils when warm.", ANALYSES,
     f"{BLOCK}\nRecall: Milk spoils when warm.\nAnalyze: {ANALYSES_TEXT}\nSummarize:"),
    # recall_summarize
    ("Milk spoils when warm", None, f"{BLOCK}\nRecall: Milk spoils when warm.\nSummarize:"),
    # analyze_summarize
    (None, ANALYSES, f"{BLOCK}\nAnalyze: {ANALYSES_TEXT}\nSummarize:"),
    # summarize only
    (None, None, f"{BLOCK}\nSummarize:"),
])
def test_summarize_input_all_modes(recall, analyses, expected):
    assert fmt.summarize_input(Q, recall, analyses) == expected


def test_analyses_text_and_target():
    assert fmt.analyses_text(ANALYSES) == ANALYSES_TEXT
    assert fmt.summarize_target("B") == "So the answer is option B."
    assert fmt.options_line(Q.options) == "(A) shelf (B) fridge (C) oven"


@pytest.mark.parametrize("text, expected", [
    ("no period", "no period."), ("  padded.  ", "padded."), ('a quote"', 'a quote"'), ("it's 'x'", "it's 'x'"),
    ("", "."), ("question?", "question?."),
])
def test_ensure_period(text, expected):
    assert fmt.ensure_period(text) == expected


# ----- extract_answer ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, strict, lenient", [
    ("So the answer is option B.", "B", "B"),
    ("so THE ANSWER IS OPTION c.", None, "C"),  # lenient: case-insensitive, letter upper-cased
    ("So the answer is option (D).", None, "D"),
    ("So the answer is option E", None, "E"),  # no final period
    ("the answer is option A. No wait, the answer is option B.", "A", "A"),  # several: the first, as the authors
    ("The answer is option A. No wait, the answer is option B.", "B", "A"),  # strict is case-sensitive
    ("I think it is B.", None, None),
    ("So the answer is option Apple.", None, None),  # a word, not a label
    ("", None, None),
    (None, None, None),
])
def test_extract_answer_strict_as_the_authors_and_lenient_beside_it(text, strict, lenient):
    assert fmt.extract_answer(text) == strict
    assert fmt.extract_answer(text, lenient=True) == lenient


def test_extract_answer_reads_the_target():
    for label in "ABCDEFGHIJ":
        assert fmt.extract_answer(fmt.summarize_target(label)) == label


# ----- inverse parsers -----------------------------------------------------------------------------------------

def test_parse_options_line():
    assert fmt.parse_options_line("(A) shelf (B) fridge (C) oven") == list(Q.options)
    assert fmt.parse_options_line("(A) yes (B) no") == [("A", "yes"), ("B", "no")]
    with pytest.raises(ValueError, match="not an options line"):
        fmt.parse_options_line("shelf (A) fridge")
    with pytest.raises(ValueError):
        fmt.parse_options_line("no options at all")


def test_split_analyses():
    assert fmt.split_analyses(ANALYSES_TEXT) == [
        ("A", "a shelf is warm."), ("B", "a fridge keeps it cold."), ("C", "an oven heats it.")]
    assert fmt.split_analyses("") == []


def test_parse_stage_input_each_stage():
    r = fmt.parse_stage_input(fmt.recall_input(Q))
    assert (r["stage"], r["stem"], r["options"], r["recall"], r["analyses"]) == \
        ("recall", Q.stem, list(Q.options), None, None)
    a = fmt.parse_stage_input(fmt.analyze_input(Q, "C", "Milk spoils"))
    assert (a["stage"], a["option"], a["recall"], a["options"]) == ("analyze", "C", "Milk spoils.", list(Q.options))
    s = fmt.parse_stage_input(fmt.summarize_input(Q, "Milk spoils.", ANALYSES))
    assert s["stage"] == "summarize" and s["recall"] == "Milk spoils."
    assert s["analyses"] == [(lab, fmt.ensure_period(t)) for lab, t in ANALYSES]
    s = fmt.parse_stage_input(fmt.summarize_input(Q, None, None))
    assert (s["stem"], s["recall"], s["analyses"]) == (Q.stem, None, None)


@pytest.mark.parametrize("text", ["", "just text", "stem\n(A) x (B) y\nRecall: r.", "stem\n(A) x\nAnalyze: For option",
                                  "stem\nnot options\nRecall:"])
def test_parse_stage_input_rejects_non_stage_text(text):
    with pytest.raises(ValueError):
        fmt.parse_stage_input(text)


# ----- round trip, as a property --------------------------------------------------------------------------------
# Texts come from the real domain: one line each, without the format's own markers inside them.

_MARKERS = ("Recall:", "Analyze:", "Summarize:", "For option")
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40).map(
    str.strip).filter(lambda t: not any(m in t for m in _MARKERS))
_nonempty = _text.filter(bool)
# Option texts may hold parentheses ("car (vehicle)") but not a label mark "(B) " of their own.
_option_text = st.one_of(
    _nonempty, st.tuples(_nonempty, st.sampled_from(["(x)", "(B)c", "(1) y", "(vehicle)"])).map(" ".join)
).filter(lambda t: not re.search(r"\([A-Z]\) ", t + " "))


@st.composite
def questions(draw):
    n = draw(st.integers(2, 8))
    labels = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]
    stem_lines = draw(st.lists(_nonempty, min_size=1, max_size=2))  # a stem may span lines
    options = tuple((lab, draw(_option_text)) for lab in labels)
    return Question(id="h", stem="\n".join(stem_lines), options=options, answer=draw(st.sampled_from(labels)))


@given(q=questions(), recall=st.none() | _text, with_analyses=st.booleans(), data=st.data())
def test_round_trip_property(q, recall, with_analyses, data):
    analyses = [(lab, data.draw(_text)) for lab in q.labels] if with_analyses else None
    want_recall = None if recall is None else fmt.ensure_period(recall)
    want_analyses = None if analyses is None else [(lab, fmt.ensure_period(t)) for lab, t in analyses]

    r = fmt.parse_stage_input(fmt.recall_input(q))
    assert (r["stage"], r["stem"], r["options"]) == ("recall", q.stem, list(q.options))

    label = data.draw(st.sampled_from(q.labels))
    a = fmt.parse_stage_input(fmt.analyze_input(q, label, recall))
    assert (a["stage"], a["option"], a["stem"], a["options"], a["recall"]) == \
        ("analyze", label, q.stem, list(q.options), want_recall)

    s = fmt.parse_stage_input(fmt.summarize_input(q, recall, analyses))
    assert (s["stage"], s["stem"], s["options"], s["recall"], s["analyses"]) == \
        ("summarize", q.stem, list(q.options), want_recall, want_analyses)
    assert fmt.extract_answer(fmt.summarize_target(q.answer)) == q.answer
