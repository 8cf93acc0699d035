"""Stage rows (pure): rationales -> recall / analyze / summarize rows in the project's format, deduped;
and the replies file they are built from (append, index, torn tail)."""

from __future__ import annotations

import json

from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.records import Question
from tinythinker_ray.rundir import TeachDir
from tinythinker_ray.teacher.asking import Replies
from tinythinker_ray.teacher.filters import Rationale
from tinythinker_ray.teacher.stages import STAGES, group_rows, question_rows, write_stages

Q = Question(id="q1", stem="Where is milk kept cold?",
             options=(("A", "oven"), ("B", "fridge"), ("C", "shelf")), answer="B")
TWIN = Question(id="q1-copy", stem=Q.stem, options=Q.options, answer="B")  # same block, other id
OTHER = Question(id="q2", stem="What melts ice?", options=(("A", "heat"), ("B", "cold")), answer="A")


def rat(knowledge: str, answer: str = "B", q: Question = Q, tag: str = "") -> Rationale:
    return Rationale(knowledge, answer, tuple((lab, f"{lab} is why{tag}.") for lab in q.labels))


def sizes(kept: dict) -> dict:
    return {s: len(kept[s]) for s in STAGES}


def test_rows_of_one_question():
    rows = question_rows(Q, "B", [rat("Fridges are cold."), rat("Milk needs cold.", tag="!")])
    assert [len(rows[s]) for s in ("recall", "analyze", "summarize")] == [2, 6, 2]
    r0 = rows["recall"][0]
    assert r0 == {"input": fmt.recall_input(Q), "target": "Fridges are cold.", "label": "B", "qid": "q1"}
    a = rows["analyze"][1]
    assert a["input"] == fmt.analyze_input(Q, "B", "Fridges are cold.") and a["target"] == "B is why."
    assert a["input"].endswith("Analyze: For option B,") and not a["target"].startswith("For option")
    s = rows["summarize"][1]
    assert s["target"] == "So the answer is option B."
    assert s["input"] == fmt.summarize_input(Q, "Milk needs cold.", [(x, f"{x} is why!.") for x in Q.labels])
    parsed = fmt.parse_stage_input(s["input"])
    assert parsed["recall"] == "Milk needs cold."
    assert [lab for lab, _ in parsed["analyses"]] == ["A", "B", "C"]


def test_relabelled_label_is_used():
    rows = question_rows(Q, "C", [rat("x.", answer="C")])
    assert {r["label"] for s in rows.values() for r in s} == {"C"}
    assert rows["summarize"][0]["target"] == "So the answer is option C."


def test_dedup_as_the_reference():
    same = rat("Fridges are cold.")
    same_knowledge = rat("Fridges are cold.", tag="!")  # recall duplicate, analyze/summarize differ
    kept, raw = group_rows([(Q, "B", [same, same, same_knowledge])])
    assert raw == {"recall": 3, "recall_single": 1, "analyze": 9, "summarize": 3}
    assert sizes(kept) == {"recall": 1, "recall_single": 1, "analyze": 6, "summarize": 2}
    # the same rationale's analyze rows carry the same recall: they differ only by target
    kept, raw = group_rows([(Q, "B", [rat("Fridges are cold."), rat("Cold stops bacteria.")])])
    assert sizes(kept) == {"recall": 2, "recall_single": 1, "analyze": 6, "summarize": 2}
    assert raw["recall_single"] == 2  # recall_single dedups the deduplicated recall rows by input


def test_dedup_spans_questions_sharing_a_block():
    kept, _ = group_rows([(Q, "B", [rat("Fridges are cold.")]), (TWIN, "B", [rat("Fridges are cold.")])])
    assert sizes(kept) == {"recall": 1, "recall_single": 1, "analyze": 3, "summarize": 1}
    assert kept["recall"][0]["qid"] == "q1"  # the first one stays


def test_write_stages_streams_groups_into_files(tmp_path):
    groups = [[(Q, "B", [rat("Fridges are cold."), rat("Cold stops bacteria.")]),
               (TWIN, "B", [rat("Fridges are cold.")])],
              [(OTHER, "A", [rat("Heat melts ice.", "A", OTHER)])],
              [(Question("q3", "Unanswered?", (("A", "x"), ("B", "y")), "A"), "A", [])]]
    counts = write_stages(iter(groups), TeachDir(tmp_path))
    assert counts == {"recall": {"rows": 4, "written": 3}, "recall_single": {"rows": 3, "written": 2},
                      "analyze": {"rows": 11, "written": 8}, "summarize": {"rows": 4, "written": 3}}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.jsonl" for s in STAGES)  # no temp files
    for stage in STAGES:
        rows = [json.loads(line) for line in (tmp_path / f"{stage}.jsonl").read_text().splitlines()]
        assert len(rows) == counts[stage]["written"]
        for r in rows:
            assert set(r) == {"input", "target", "label", "qid"}
            assert fmt.parse_stage_input(r["input"])["stage"] == stage.removesuffix("_single")


def test_replies_file_cuts_a_torn_tail_and_reads_back_per_question(tmp_path):
    path = tmp_path / "replies.jsonl"
    line = {"prompt": [], "completions": [{"text": "x", "finish_reason": "stop"}], "qid": "a", "round": 0}
    torn = '{"prompt": [], "compl'
    path.write_text(json.dumps(line) + "\n" + json.dumps({**line, "qid": "b"}) + "\n" + torn)
    replies = Replies(path)  # a killed writer left half a line: it goes, the rest is indexed
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("\n")
    assert replies.has("a", 0) and replies.has("b", 0) and not replies.has("a", 1)
    replies.append([{**line, "round": 1, "completions": [{"text": "y", "finish_reason": "length"}]}])
    assert [ln["round"] for ln in replies.lines("a")] == [0, 1]
    assert replies.lines("a")[1]["completions"][0]["text"] == "y"
    assert [json.loads(x)["qid"] for x in path.read_text().splitlines()] == ["a", "b", "a"]
    assert Replies(path).index == replies.index  # a fresh read finds the same
