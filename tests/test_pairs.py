"""Preference pairs on crafted generations: every branch of the reference's recall and analyze pairs."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.records import Question
from tinythinker_ray.errors import DataError
from tinythinker_ray.reflect.pairs import (
    analyze_requests,
    build_analyze_pairs,
    build_recall_pairs,
    build_summarize_pairs,
    paired_stages,
    teacher_chains,
)

Q = Question("q1", "Where do fish live?", (("A", "water"), ("B", "sky"), ("C", "desert")), "A")
ANALYSES = [["A", "fish swim in water."], ["B", "birds fly in the sky."], ["C", "deserts are dry."]]


def chain(recall: str, prediction: str | None, analyses=None) -> dict:
    return {"recall": recall, "analyses": analyses or ANALYSES,
            "summary": f"So the answer is option {prediction}.", "prediction": prediction}


def recall_row(*chains, q: Question = Q) -> dict:
    return {"qid": q.id, "question": q.to_dict(), "chains": list(chains)}


def pairs(rows, teacher=None, seed=0):
    return list(build_recall_pairs(rows, teacher or {}, random.Random(seed)))


# ----- recall -----------------------------------------------------------------------------------------------

def test_recall_one_to_one_pairs_use_the_recall_prompt():
    out = pairs([recall_row(chain("Fish live in water.", "A"), chain("Fish fly.", "B"))])
    assert out == [{"prompt": fmt.recall_input(Q), "chosen": "Fish live in water.", "rejected": "Fish fly.",
                    "qid": "q1", "stage": "recall", "chosen_analyses": ANALYSES}]


def test_question_without_rejected_is_skipped():
    assert pairs([recall_row(chain("r1.", "A"), chain("r2.", "A"))]) == []


def test_unparsed_prediction_counts_as_rejected():
    out = pairs([recall_row(chain("good.", "A"), chain("garbled.", None))])
    assert [(p["chosen"], p["rejected"]) for p in out] == [("good.", "garbled.")]


def test_recalls_on_both_sides_are_dropped_and_sides_deduplicated():
    rows = [recall_row(chain("both.", "A"), chain("both.", "B"), chain("good.", "A"), chain("good.", "A"),
                       chain("bad.", "C"), chain("bad.", "B"))]
    out = pairs(rows)
    assert [(p["chosen"], p["rejected"]) for p in out] == [("good.", "bad.")]


def test_common_recall_dropped_leaving_no_rejected_skips():
    assert pairs([recall_row(chain("both.", "A"), chain("both.", "B"), chain("good.", "A"))]) == []


def test_more_chosen_resamples_rejected_with_replacement():
    out = pairs([recall_row(chain("g1.", "A"), chain("g2.", "A"), chain("g3.", "A"), chain("bad.", "B"))])
    assert [p["chosen"] for p in out] == ["g1.", "g2.", "g3."]
    assert [p["rejected"] for p in out] == ["bad."] * 3


def test_more_rejected_tops_chosen_up_from_teacher_with_replacement():
    teacher = {"q1": [{"recall": "teacher says water.", "analyses": ANALYSES}]}
    rows = [recall_row(chain("g1.", "A"), chain("b1.", "B"), chain("b2.", "C"), chain("b3.", "B"))]
    out = pairs(rows, teacher)
    assert [p["rejected"] for p in out] == ["b1.", "b2.", "b3."]
    assert [p["chosen"] for p in out] == ["g1.", "teacher says water.", "teacher says water."]


def test_teacher_top_up_without_replacement_when_enough():
    teacher = {"q1": [{"recall": f"t{i}.", "analyses": None} for i in range(6)]}
    out = pairs([recall_row(chain("b1.", "B"), chain("b2.", "C"), chain("b3.", "B"))], teacher)
    chosen = [p["chosen"] for p in out]
    assert len(chosen) == 3 and len(set(chosen)) == 3 and all(c.startswith("t") for c in chosen)


def test_no_chosen_and_no_teacher_gives_nothing_and_other_questions_unaffected():
    q2 = Question("q2", "Sky?", (("A", "up"), ("B", "down")), "A")
    rows = [recall_row(chain("b1.", "B")), recall_row(chain("up.", "A"), chain("down.", "B"), q=q2)]
    out = pairs(rows)
    assert [(p["qid"], p["chosen"], p["rejected"]) for p in out] == [("q2", "up.", "down.")]


def test_recall_pairs_stream_one_question_at_a_time():
    def rows():
        yield recall_row(chain("good.", "A"), chain("bad.", "B"))
        raise AssertionError("read past the first question")

    first = next(build_recall_pairs(rows(), {}, random.Random(0)))
    assert first["chosen"] == "good."


def test_missing_field_is_a_data_error_naming_it():
    with pytest.raises(DataError, match="chains"):
        pairs([{"qid": "q1", "question": Q.to_dict()}])
    with pytest.raises(DataError, match=r"summarize.jsonl:2, field 'input'"):
        teacher_chains([{"input": fmt.summarize_input(Q, "r.", None), "qid": "q1"},
                        {"input": "no stage", "qid": "q1"}])
    with pytest.raises(DataError, match=r"recall.jsonl:1, field 'qid'"):
        teacher_chains([], [{"input": fmt.recall_input(Q), "target": "r."}])


def test_teacher_chains_parse_summarize_rows_and_fall_back_to_recall_rows():
    analyses = [("A", "water is wet."), ("B", "sky is up."), ("C", "sand is dry.")]
    summarize = [{"input": fmt.summarize_input(Q, "Fish need water.", analyses),
                  "target": fmt.summarize_target("A"), "label": "A", "qid": "q1"}]
    recall = [{"input": fmt.recall_input(Q), "target": "q1 has summarize rows", "label": "A", "qid": "q1"},
              {"input": "x", "target": "Birds fly", "label": "A", "qid": "q2"}]
    out = teacher_chains(summarize, recall)
    assert out == {"q1": [{"recall": "Fish need water.", "analyses": [list(a) for a in analyses]}],
                   "q2": [{"recall": "Birds fly.", "analyses": None}]}


# ----- analyze ----------------------------------------------------------------------------------------------

RECALL = "Fish need water."
GOOD = [["A", "fish swim in water, correct."], ["B", "fish do not fly."], ["C", "no water in deserts."]]
BAD = [["A", "water is too wet."], ["B", "fish fly in the sky, correct."], ["C", "deserts are fine."]]


def analyze_row(*chains, backup=None) -> dict:
    return {"qid": Q.id, "question": Q.to_dict(), "recall": RECALL, "backup": backup or [],
            "chains": [{"analyses": a, "prediction": p} for a, p in chains]}


def apairs(rows, teacher=None, seed=0):
    return list(build_analyze_pairs(rows, teacher or {}, random.Random(seed)))


def test_two_analyze_pairs_per_match_gold_option_and_rejected_prediction():
    out = apairs([analyze_row((GOOD, "A"), (BAD, "B"))])
    assert out == [
        {"prompt": fmt.analyze_input(Q, "A", RECALL), "chosen": GOOD[0][1], "rejected": BAD[0][1],
         "qid": "q1", "stage": "analyze"},
        {"prompt": fmt.analyze_input(Q, "B", RECALL), "chosen": GOOD[1][1], "rejected": BAD[1][1],
         "qid": "q1", "stage": "analyze"},
    ]


def test_invalid_predictions_are_filtered():
    no_c = [a for a in BAD if a[0] != "C"]
    rows = [analyze_row((GOOD, "A"), (BAD, "Z"), (BAD, None), (no_c, "C"))]  # Z: no option; C: not analysed
    assert apairs(rows) == []


def test_analysis_sets_on_both_sides_dropped_and_no_rejected_skips():
    assert apairs([analyze_row((GOOD, "A"), (GOOD, "B"))]) == []
    assert apairs([analyze_row((GOOD, "A"), (GOOD, "A"))]) == []


def test_empty_chosen_tops_up_from_backup_with_replacement():
    bad2 = [["A", "no."], ["B", "maybe."], ["C", "yes, correct."]]
    out = apairs([analyze_row((BAD, "B"), (bad2, "C"), backup=[GOOD])])
    assert [p["chosen"] for p in out] == [GOOD[0][1], GOOD[1][1], GOOD[0][1], GOOD[2][1]]
    assert [p["rejected"] for p in out] == [BAD[0][1], BAD[1][1], bad2[0][1], bad2[2][1]]
    assert [fmt.parse_stage_input(p["prompt"])["option"] for p in out] == ["A", "B", "A", "C"]


def test_empty_chosen_without_backup_uses_teacher_analyses():
    teacher = {"q1": [GOOD]}
    out = apairs([analyze_row((BAD, "B"))], teacher)
    assert [p["chosen"] for p in out] == [GOOD[0][1], GOOD[1][1]]
    assert apairs([analyze_row((BAD, "B"))]) == []  # nothing right anywhere: no pairs


def test_more_chosen_resamples_rejected_and_identical_texts_give_no_pair():
    good2 = [["A", "water, yes."], ["B", "fish do not fly."], ["C", "no."]]
    out = apairs([analyze_row((GOOD, "A"), (good2, "A"), (BAD, "B"))])
    assert [p["rejected"] for p in out] == [BAD[0][1], BAD[1][1], BAD[0][1], BAD[1][1]]
    assert [p["chosen"] for p in out] == [GOOD[0][1], GOOD[1][1], good2[0][1], good2[1][1]]
    same = [["A", "water is too wet."], ["B", "fish do not fly."], ["C", "x."]]
    out = apairs([analyze_row((same, "A"), (BAD, "B"))])  # gold analyses identical -> only the B pair
    assert [fmt.parse_stage_input(p["prompt"])["option"] for p in out] == ["B"]


def test_some_chosen_and_more_rejected_replaces_chosen_by_the_difference_and_ignores_backup():
    """generate.py: 0 < chosen < rejected -> chosen.sample(rejected - chosen, replace=True); the backup (here a
    set no chain produced) is used only when no chain was right."""
    bad2 = [["A", "no."], ["B", "maybe."], ["C", "yes, correct."]]
    bad3 = [["A", "dry."], ["B", "birds, and fish too."], ["C", "sand."]]
    other = [["A", "a backup set."], ["B", "b."], ["C", "c."]]
    out = apairs([analyze_row((GOOD, "A"), (BAD, "B"), (bad2, "C"), (bad3, "B"), backup=[other])])
    assert len(out) == 2 * (3 - 1)  # two matches, two pairs each
    assert {p["chosen"] for p in out} <= {GOOD[0][1], GOOD[1][1], GOOD[2][1]}  # never the backup's texts
    assert [p["rejected"] for p in out] == [BAD[0][1], BAD[1][1], bad2[0][1], bad2[2][1]]  # the first two rejected


def test_analyze_requests_one_per_distinct_chosen_recall_with_backups():
    recall_pairs = pairs([recall_row(chain("g1.", "A"), chain("b1.", "B"), chain("b2.", "C"))],
                         {"q1": [{"recall": "g1.", "analyses": GOOD}]})
    reqs = analyze_requests(recall_pairs, {"q1": Q})
    assert [(r["recall"], len(r["backup"])) for r in reqs] == [("g1.", 2)]
    assert reqs[0]["backup"] == [ANALYSES, GOOD]


# ----- invariants on random generations ---------------------------------------------------------------------

recalls = st.sampled_from([f"r{i}." for i in range(6)])
preds = st.sampled_from(["A", "B", "C", None])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(recalls, preds), min_size=1, max_size=12), st.integers(0, 3), st.integers(0, 10**6))
def test_recall_pair_invariants(samples, n_teacher, seed):
    teacher = {"q1": [{"recall": f"t{i}.", "analyses": None} for i in range(n_teacher)]}
    out = pairs([recall_row(*(chain(r, p) for r, p in samples))], teacher, seed)
    right = {r for r, p in samples if p == "A"}
    wrong = {r for r, p in samples if p != "A"}
    chosen_ok = (right - wrong) | {t["recall"] for t in teacher["q1"]}
    assert all(p["chosen"] in chosen_ok and p["rejected"] in wrong - right for p in out)
    n_chosen, n_rejected = len(right - wrong), len(wrong - right)
    balanced = n_teacher > 0 or n_chosen >= n_rejected  # else chosen runs out: zip stops at the shorter side
    expected = 0 if not n_rejected else max(n_chosen, n_rejected) if balanced else n_chosen
    assert len(out) == expected
    if balanced and expected and n_chosen <= n_rejected:  # every distinct rejected recall is used once
        assert sorted(p["rejected"] for p in out) == sorted(wrong - right)
    # more chosen: the rejected side is resampled with replacement to their number (generate.py), so a
    # rejected recall may repeat and another may not appear


def test_pairs_are_deterministic_for_a_seed():
    rows = [recall_row(*(chain(f"r{i}.", "A" if i % 3 == 0 else "B") for i in range(9)))]
    assert pairs(rows, seed=7) == pairs(rows, seed=7)
    assert list(itertools.islice(build_recall_pairs(rows, {}, random.Random(1)), 2))


# ----- the label a pair is judged by --------------------------------------------------------------------------

def test_phase2_judges_chains_by_the_label_phase1_trained_on(tmp_path):
    """The teacher's majority relabelled q1 from A to B, so phase 1 taught B: a chain reaching B is chosen, as
    the authors' generate.py reads GT from recall_single."""
    from tinythinker_ray.config import load_config
    from tinythinker_ray.reflect.iterate import training_questions
    from tinythinker_ray.storage import write_jsonl

    q2 = Question("q2", "Where do birds fly?", Q.options, "B")
    write_jsonl(tmp_path / "teach" / "questions" / "train.jsonl", [Q.to_dict(), q2.to_dict(), {**Q.to_dict(), "id": "q3"}])
    write_jsonl(tmp_path / "teach" / "recall_single.jsonl", [  # q3 had no usable rationale: not covered
        {"input": fmt.recall_input(Q), "target": "x.", "label": "B", "qid": "q1"},
        {"input": fmt.recall_input(q2), "target": "y.", "label": "B", "qid": "q2"}])
    questions = training_questions(load_config(None, [f"run_dir={tmp_path}"]))
    assert [(q.id, q.answer) for q in questions] == [("q1", "B"), ("q2", "B")]
    out = pairs([recall_row(chain("sky.", "B"), chain("water.", "A"), q=questions[0])])
    assert [(p["chosen"], p["rejected"]) for p in out] == [("sky.", "water.")]


def test_reflecting_over_all_questions_adds_the_untaught_ones_with_their_benchmark_label(tmp_path):
    """reflect.questions all: q3 (no rationale) is self-generated on too, judged by its benchmark label A; q1
    keeps the label phase 1 trained on. Its recall pairs get no teacher top-up: one chosen, one pair."""
    from tinythinker_ray.config import load_config
    from tinythinker_ray.reflect.iterate import training_questions
    from tinythinker_ray.storage import write_jsonl

    q3 = {**Q.to_dict(), "id": "q3"}
    write_jsonl(tmp_path / "teach" / "questions" / "train.jsonl", [Q.to_dict(), q3])
    write_jsonl(tmp_path / "teach" / "recall_single.jsonl",
                [{"input": fmt.recall_input(Q), "target": "x.", "label": "B", "qid": "q1"}])
    taught = training_questions(load_config(None, [f"run_dir={tmp_path}"]))
    every = training_questions(load_config(None, [f"run_dir={tmp_path}", "reflect.questions=all"]))
    assert [(q.id, q.answer) for q in taught] == [("q1", "B")]
    assert [(q.id, q.answer) for q in every] == [("q1", "B"), ("q3", "A")]
    out = pairs([recall_row(chain("sky.", "A"), chain("water.", "B"), chain("fire.", "C"), q=every[1])])
    assert [(p["chosen"], p["rejected"]) for p in out] == [("sky.", "water.")]


# ----- summarize (our addition: the reference pairs no summaries) -------------------------------------------

FLIPPED = [["A", "fish do not live in water."], ["B", "fish live in the sky."], ["C", "deserts are dry."]]


def test_a_chain_whose_summary_missed_the_label_gives_one_summarize_pair_on_its_own_stages():
    rows = [recall_row(chain("Fish live in water.", "A"), chain("Fish live in water.", "B", FLIPPED),
                       chain("Fish live in water.", "B", FLIPPED), chain("Fish fly.", None))]
    out = list(build_summarize_pairs(rows))
    assert out == [
        {"prompt": fmt.summarize_input(Q, "Fish live in water.", FLIPPED), "chosen": "So the answer is option A.",
         "rejected": "So the answer is option B.", "qid": "q1", "stage": "summarize"},  # the twin deduplicated
        {"prompt": fmt.summarize_input(Q, "Fish fly.", ANALYSES), "chosen": "So the answer is option A.",
         "rejected": "So the answer is option None.", "qid": "q1", "stage": "summarize"}]  # unparsed: rejected


def test_summarize_pairs_skip_right_chains_and_prompts_on_both_sides():
    both = [chain("r.", "A"), chain("r.", "B")]  # one prompt, two summaries: no preference to learn
    assert list(build_summarize_pairs([recall_row(chain("good.", "A"), *both)])) == []


def test_a_chain_without_analyses_pairs_the_summary_its_student_saw():
    """A recall_summarize student's chains come with analyses [] (selfgen): the prompt has no Analyze part."""
    row = recall_row({"recall": "Fish fly.", "analyses": [], "summary": "So the answer is option B.",
                      "prediction": "B"})
    (p,) = build_summarize_pairs([row])
    assert p["prompt"] == fmt.summarize_input(Q, "Fish fly.", None) and "Analyze:" not in p["prompt"]


def test_paired_stages_add_summarize_only_when_a_round_paired_summaries():
    assert paired_stages([{"recall_pairs": 3, "analyze_pairs": 0}]) == ["recall", "analyze"]
    assert paired_stages([{"recall_pairs": 3}, {"summarize_pairs": 0}]) == ["recall", "analyze", "summarize"]
    # a learning check's per-seed counts name the stages bare
    assert paired_stages([{"recall": 3, "analyze": 0}, {"recall": 1, "analyze": 2, "summarize": 4}], key="{}") == [
        "recall", "analyze", "summarize"]
    assert paired_stages([{"recall": 3, "analyze": 0}], key="{}") == ["recall", "analyze"]
