"""The teacher prompt (pure): the reference's system/user turns, the constraint regex on real rationales."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tinythinker_ray.core.records import Question
from tinythinker_ray.data.loaders import load_fewshot
from tinythinker_ray.teacher import prompt
from tinythinker_ray.teacher.filters import Rationale, parse_reply

DATASETS = ("csqa", "obqa", "strategyqa")


def fewshot_question(ex: dict, qid: str = "shot") -> Question:
    """A few-shot example as a Question: 'A. x, B. y' options, the label from its 'X is correct.' line."""
    options = tuple(re.findall(r"(?:^|, )([A-Z])\. (.*?)(?=, [A-Z]\. |$)", ex["Options"]))
    answer = next(e[0] for e in ex["Explanations"] if e[1:].startswith(" is correct."))
    return Question(id=qid, stem=ex["Q"], options=options, answer=answer)


def in_user_order(q: Question, ex: dict) -> list[str]:
    """The example's explanation lines reordered as the user turn asks (gold first), as a teacher replies."""
    by_label = {e[0]: e for e in ex["Explanations"]}
    return [by_label[label] for label in prompt.option_order(q)]


Q = Question(id="q1", stem="Where do you keep milk cold?",
             options=(("A", "oven"), ("B", "fridge"), ("C", "shelf")), answer="B")


def test_instruction_is_request_json_verbatim():
    assert prompt.INSTRUCTION == (
        "Reference examples delimited with ### as a guide to outline the reasoning steps towards the correct "
        "answer in a step-by-step manner. First, concisely summarize the key information or core issue from "
        "the question statement. Then, systematically evaluate each option according to the following format:"
        "\n\nKey Information: [Summarize the key information from the question.]\nExplanations: [Option] is "
        "[correct/incorrect]. Because [Explain the option's features and relevance to the key concept.]\n\n"
        "Ensure explanations are clear, concise, and diverse by using varied logic, examples, and "
        "perspectives. Be creative to prevent repetition and make sure each step leads to the conclusion. "
        "Highlighting the uniqueness of each example to support diverse reasoning.\n")


def test_user_message_is_the_reference_turn():
    assert prompt.user_message(Q) == (
        "Where do you keep milk cold?\nOptions: A. oven, B. fridge, C. shelf\nKey Information:\n"
        "Explanations: B is correct. Because\nA is incorrect. Because\nC is incorrect. Because")


def test_system_message_renders_seeded_shots_exactly():
    shots = load_fewshot("csqa")
    one = prompt.system_message(shots, 1, seed=3)
    ex = next(e for e in shots if f"\n###\n{e['Q']}\n" in one)
    expected = (prompt.INSTRUCTION + f"\n###\n{ex['Q']}\nOptions: {ex['Options']}\nKey Information: "
                f"{ex['Key Information']}\nExplanations: " + "\n".join(ex["Explanations"])
                + "\n###\n").strip()
    assert one == expected
    eight = prompt.system_message(shots, 8, seed=3)
    assert eight.count("\n###\n") == 16 - 1  # the closing ### of the last shot loses its newline to strip()
    assert eight == prompt.system_message(shots, 8, seed=3)  # seeded
    assert eight != prompt.system_message(shots, 8, seed=4)  # a different draw order
    assert prompt.system_message(shots, 50, seed=0).count("Key Information: ") == len(shots) + 1
    assert prompt.system_message(shots, 0, seed=0) == prompt.INSTRUCTION.strip()


def test_messages_are_system_then_user():
    m = prompt.messages(Q, "SYS")
    assert [x["role"] for x in m] == ["system", "user"]
    assert m[0]["content"] == "SYS" and m[1]["content"] == prompt.user_message(Q)


@pytest.mark.parametrize("name", DATASETS)
def test_real_rationales_in_user_order_match_the_constraint(name):
    for i, ex in enumerate(load_fewshot(name)):
        q = fewshot_question(ex, f"{name}-{i}")
        reply = prompt.reply_text(ex["Key Information"], in_user_order(q, ex))
        assert re.fullmatch(prompt.constraint_regex(q), reply), reply
        # the file's own order (A, B, C...) differs from the user turn's unless the gold option is A
        plain = prompt.reply_text(ex["Key Information"], ex["Explanations"])
        assert bool(re.fullmatch(prompt.constraint_regex(q), plain)) == (q.answer == q.labels[0])


def test_constraint_rejects_off_format_replies():
    rx = prompt.constraint_regex(Q, line_chars=40)
    good = "Key Information: Milk spoils warm.\nExplanations: B is correct. Because cold.\n" \
           "A is incorrect. Because hot.\nC is incorrect. Because warm."
    assert re.fullmatch(rx, good)
    assert re.fullmatch(rx, good.replace("A is incorrect", "A is correct"))  # the verdicts are the teacher's
    forced = prompt.constraint_regex(Q, line_chars=40, verdicts=True)
    assert re.fullmatch(forced, good) and not re.fullmatch(forced, good.replace("A is incorrect", "A is correct"))
    bad = [good.replace("B is correct", "B is maybe"),  # no verdict
           good.replace("Explanations: B is", "Explanations: A is"),  # the user turn's option order
           good.replace("Milk spoils warm.", "Milk\nspoils."),  # two-line key information
           good.replace("Because hot.", "Because " + "x" * 45),  # over-long line
           good.replace("Because cold.", "Because  "),  # blank reason
           good + "\nSo the answer is B."]  # extra text
    for reply in bad:
        assert not re.fullmatch(rx, reply), reply


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_whatever_the_constraint_admits_parses_or_names_its_verdicts_fault(data):
    q = Question(id="x", stem="s", options=(("A", "a"), ("B", "b"), ("C", "c"), ("D", "d")), answer="C")
    verdicts = data.draw(st.booleans())
    reply = data.draw(st.from_regex(prompt.constraint_regex(q, line_chars=12, verdicts=verdicts), fullmatch=True))
    assume(reply.count("Explanations:") == 1)  # the one thing a bounded line cannot forbid
    out = parse_reply(reply, q.labels)
    correct = re.findall(r"([A-D]) is correct\.", reply)
    if len(correct) != 1:  # the shape alone leaves the verdicts free: the filters drop what has not one answer
        assert not verdicts and out == ("no_correct_option" if not correct else "multiple_correct")
        return
    assert isinstance(out, Rationale), (reply, out)
    assert out.answer == correct[0] and [lab for lab, _ in out.explanations] == q.labels
    assert out.answer == "C" or not verdicts
