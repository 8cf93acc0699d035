"""Kept rationales -> the Recall / Analyze / Summarize training rows, deduplicated as the reference does.

Per rationale: one recall row (input recall_input(q), target the Key Information), one analyze row per
option (input analyze_input(q, option, recall), target that option's explanation without its "For option X,"
head) and one summarize row (input summarize_input(q, recall, analyses), target "So the answer is option X.").
Every row is {"input", "target", "label", "qid"}, with the (possibly relabelled) label.

Dedup, as the reference: recall by (input, target); recall_single by input (one recall per question); analyze
and summarize by (input, target). Every input begins with the question block, so only questions with the same
block can share a row: dedup state lives per group of such questions and `write_stages` streams the groups
into the files, so memory stays flat however many rows there are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import ExitStack

from ..core import format as fmt
from ..core.records import Question
from ..rundir import TeachDir
from ..storage import atomic_open
from .filters import Rationale

STAGES = ("recall", "recall_single", "analyze", "summarize")
Taught = tuple[Question, str, list[Rationale]]  # a question, its label after relabelling, its kept rationales


def question_rows(q: Question, label: str, rationales: list[Rationale]) -> dict[str, list[dict]]:
    """All rows one question's rationales make, before dedup (recall_single is derived in `group_rows`)."""
    def row(inp: str, target: str) -> dict:
        return {"input": inp, "target": target, "label": label, "qid": q.id}

    out: dict[str, list[dict]] = {"recall": [], "analyze": [], "summarize": []}
    for r in rationales:
        out["recall"].append(row(fmt.recall_input(q), r.knowledge))
        out["analyze"] += [row(fmt.analyze_input(q, opt, r.knowledge), reason)
                           for opt, reason in r.explanations]
        out["summarize"].append(row(fmt.summarize_input(q, r.knowledge, r.explanations),
                                    fmt.summarize_target(label)))
    return out


def group_rows(group: Iterable[Taught]) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Deduplicated rows of a group of questions sharing one question block, and the counts before dedup."""
    kept: dict[str, list[dict]] = {s: [] for s in STAGES}
    raw = dict.fromkeys(STAGES, 0)
    seen: dict[str, set] = {s: set() for s in STAGES}
    for q, label, rationales in group:
        for stage, rows in question_rows(q, label, rationales).items():
            raw[stage] += len(rows)
            for r in rows:
                if (r["input"], r["target"]) not in seen[stage]:
                    seen[stage].add((r["input"], r["target"]))
                    kept[stage].append(r)
    raw["recall_single"] = len(kept["recall"])
    for r in kept["recall"]:
        if r["input"] not in seen["recall_single"]:
            seen["recall_single"].add(r["input"])
            kept["recall_single"].append(r)
    return kept, raw


def write_stages(groups: Iterable[Iterable[Taught]], out: TeachDir) -> dict[str, dict[str, int]]:
    """Stream every group's rows into the stage files of `out` (recall, recall_single, analyze, summarize; each
    appears atomically when all are written). Returns per stage {"rows": before dedup, "written": after}."""
    counts = {s: {"rows": 0, "written": 0} for s in STAGES}
    with ExitStack() as stack:
        files = {s: stack.enter_context(atomic_open(out.stage(s))) for s in STAGES}
        for group in groups:
            kept, raw = group_rows(group)
            for s in STAGES:
                counts[s]["rows"] += raw[s]
                counts[s]["written"] += len(kept[s])
                files[s].writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept[s])
    return counts
