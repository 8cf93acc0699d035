"""Reply filters (pure): parsing real and malformed replies, majority relabel, diversity pick, retries."""

from __future__ import annotations

import random

import pytest
from test_teacher_prompt import DATASETS, fewshot_question, in_user_order

from tinythinker_ray.core.format import ensure_period
from tinythinker_ray.core.records import Question
from tinythinker_ray.data.loaders import load_fewshot
from tinythinker_ray.teacher import filters, prompt
from tinythinker_ray.teacher.filters import Ask, Rationale, parse_reply

Q = Question(id="q", stem="Where is milk kept cold?",
             options=(("A", "oven"), ("B", "fridge"), ("C", "shelf"), ("D", "car"), ("E", "bag")), answer="B")
GOOD = ("Key Information: Milk must be kept cold.\nExplanations: B is correct. Because a fridge is cold\n"
        "A is incorrect. Because an oven is hot.\nC is incorrect. Because a shelf is at room temperature.\n"
        "D is incorrect. Because a car gets warm.\nE is incorrect. Because a bag does not cool.")


@pytest.mark.parametrize("name", DATASETS)
def test_real_fewshot_rationales_parse_back(name):
    for i, ex in enumerate(load_fewshot(name)):
        q = fewshot_question(ex, f"{name}-{i}")
        as_file = parse_reply(prompt.reply_text(ex["Key Information"], ex["Explanations"]), q.labels)
        as_teacher = parse_reply(prompt.reply_text(ex["Key Information"], in_user_order(q, ex)), q.labels)
        assert isinstance(as_file, Rationale), (name, i, as_file)
        assert as_file == as_teacher  # stored in option order whatever order the teacher wrote
        assert as_file.answer == q.answer
        assert as_file.knowledge == ensure_period(ex["Key Information"])
        assert [lab for lab, _ in as_file.explanations] == q.labels
        for (lab, reason), line in zip(as_file.explanations, ex["Explanations"], strict=True):
            assert line.startswith(f"{lab} is ") and ensure_period(line.split(". Because ", 1)[1]) == reason


def test_good_reply_fields():
    r = parse_reply(GOOD, Q.labels)
    assert r.answer == "B" and r.knowledge == "Milk must be kept cold."
    assert dict(r.explanations)["B"] == "a fridge is cold."  # a period is ensured
    assert [lab for lab, _ in r.explanations] == Q.labels


@pytest.mark.parametrize("reply, reason", [
    ("", "no_key_information"),
    ("Explanations: B is correct. Because cold.", "no_key_information"),
    (GOOD.replace("Milk must be kept cold.", ""), "no_key_information"),
    (GOOD.replace("A is incorrect.", "A is incorrect!"), "bad_prefix"),
    (GOOD.replace("A is incorrect.", "Option A is incorrect."), "bad_prefix"),
    (GOOD.replace("E is incorrect.", "F is incorrect."), "unknown_option"),
    (GOOD.replace("E is incorrect.", "D is incorrect."), "duplicate_option"),
    (GOOD.replace("B is correct.", "B is incorrect."), "no_correct_option"),
    (GOOD.replace("A is incorrect.", "A is correct."), "multiple_correct"),
    (GOOD.rsplit("\n", 1)[0], "missing_options"),  # the last option never explained
    (GOOD.replace("C is incorrect. Because", "C is incorrect since"), "missing_options"),  # no delimiter
    (GOOD.replace("\nA is", "\nAlso worth noting.\nA is"), "missing_options"),  # a junk line
])
def test_each_drop_reason(reply, reason):
    assert parse_reply(reply, Q.labels) == reason


def test_cut_and_failed_replies_are_dropped_whatever_their_text():
    assert parse_reply(GOOD, Q.labels, "length") == "length"
    assert parse_reply(GOOD, Q.labels, "error") == "error"


def test_tolerated_variations_parse_to_the_same_rationale():
    base = parse_reply(GOOD, Q.labels)
    variants = [
        "Sure, here it is.\n" + GOOD,  # preamble
        GOOD + "\nSo the answer is B.",  # extra text after the options
        GOOD.replace("Information: Milk", "Information:\nMilk"),  # knowledge on the next line
        GOOD.replace("Explanations: B is", "Explanations:\n\nB is"),  # explanations on the next line
        GOOD.replace("\nA is incorrect", "\n\nA is incorrect"),  # blank lines
    ]
    for v in variants:
        assert parse_reply(v, Q.labels) == base, v


def test_delimiters_and_multiline_knowledge():
    r = parse_reply(GOOD.replace("A is incorrect. Because", "A is incorrect. Although")
                    .replace("C is incorrect. Because", "C is incorrect. While")
                    .replace("D is incorrect. Because", "D is incorrect. Because,"), Q.labels)
    assert dict(r.explanations)["A"] == "an oven is hot."
    assert dict(r.explanations)["C"] == "a shelf is at room temperature."
    assert dict(r.explanations)["D"] == "a car gets warm."
    # the earliest delimiter splits: a later "Because" stays inside the reason
    r = parse_reply(GOOD.replace("Because an oven is hot.", "While an oven heats food. Because it is hot."),
                    Q.labels)
    assert dict(r.explanations)["A"] == "an oven heats food. Because it is hot."
    r = parse_reply(GOOD.replace("Milk must be kept cold.", "Milk spoils\nunless it is kept cold"), Q.labels)
    assert r.knowledge == "Milk spoils unless it is kept cold."


def test_filter_samples_counts_every_reason():
    replies = [(GOOD, "stop"), (GOOD, "length"), ("nonsense", "stop"), ("", "error"),
               (GOOD.replace("B is correct.", "B is incorrect."), "stop"), (GOOD, "stop")]
    kept, drops = filters.filter_samples(replies, Q.labels)
    assert len(kept) == 2
    assert drops == {"length": 1, "no_key_information": 1, "error": 1, "no_correct_option": 1}


def test_majority_relabel():
    assert filters.majority_label(["A", "A", "B"], "B") == "A"
    assert filters.majority_label(["A", "B"], "B") == "B"  # a tie keeps the label
    assert filters.majority_label(["C", "A", "A", "C", "B"], "B") == "C"  # tied others: the first given wins
    assert filters.majority_label([], "D") == "D"


def _r(knowledge: str, answer: str = "B") -> Rationale:
    return Rationale(knowledge, answer, tuple((lab, f"{lab} reason.") for lab in Q.labels))


def test_judge_relabels_and_keeps_only_agreeing_rationales():
    parsed = [_r("Cold keeps milk fresh for days.", "A"), _r("Ovens are for baking food only.", "A"),
              _r("Fridges hold food at four degrees.", "B")]
    v = filters.judge("B", parsed, augment=8, threshold=10, rng=random.Random(0))
    assert (v.label, v.relabelled, v.parsed, v.consistent) == ("A", True, 3, 2)
    assert {r.answer for r in v.kept} == {"A"} and len(v.kept) == 2


def test_select_diverse_threshold():
    base = "Milk must be kept cold to stay fresh."
    ten, eleven = "Y" * 10 + base[10:], "Y" * 11 + base[11:]
    far = "Ovens and bags do not cool anything at all."
    assert filters.Levenshtein.distance(base, ten) == 10 and filters.Levenshtein.distance(base, eleven) == 11
    # more than `threshold` edits from every other candidate: 11 is distinct, 10 is not
    assert filters.select_diverse([_r(base), _r(eleven)], 2, 10, random.Random(0)) == [_r(base), _r(eleven)]
    assert filters.select_diverse([_r(base), _r(ten), _r(far)], 1, 10, random.Random(0)) == [_r(far)]
    assert filters.select_diverse([_r(base), _r(ten), _r(far)], 1, 9, random.Random(0)) == [_r(base)]


def test_select_diverse_seeded_fill():
    same = [_r(f"Milk is cold {i}") for i in range(6)]  # all within 10 edits of each other: none distinct
    a = filters.select_diverse(same, 3, 10, random.Random(7))
    assert a == filters.select_diverse(same, 3, 10, random.Random(7))
    assert len(a) == 3 and len(set(a)) == 3
    draws = {tuple(filters.select_diverse(same, 3, 10, random.Random(s))) for s in range(20)}
    assert len(draws) > 1  # the fill is random, not the first three
    assert filters.select_diverse(same[:2], 5, 10, random.Random(0)) in (same[:2], same[1::-1])
    far = _r("A completely different sentence about ovens.")
    mixed = filters.select_diverse(same + [far], 2, 10, random.Random(1))
    assert mixed[0] == far and mixed[1] in same  # distinct ones first, then the fill


def test_plan_retries_reasks_the_unusable_replies_as_the_authors_or_the_missing_rationales():
    O = filters.Outcome  # noqa: E741 (a short constructor name keeps the table of outcomes readable)
    outcomes = [O("full", 0, 8, False, 256), O("disagree", 0, 5, False, 256), O("cut", 8, 0, True, 256),
                O("capped", 3, 2, True, 1500)]
    plan = filters.plan_retries(outcomes, reask="unusable", augment=8, max_tokens_cap=2048)
    # replies that parsed but disagree with the vote are not replaced (the authors' generate notebook)
    assert plan == {"cut": Ask(8, 512), "capped": Ask(3, 2048)}
    plan = filters.plan_retries(outcomes, reask="missing", augment=8, max_tokens_cap=2048)
    assert plan == {"disagree": Ask(3, 256), "cut": Ask(8, 512), "capped": Ask(6, 2048)}
    assert filters.plan_retries([O("q", 0, 9, True, 256)], reask="missing", augment=8, max_tokens_cap=2048) == {}
