"""A STaR-style diagnostic for the learning check: phase 1 taught, besides the teacher's rationales, the student's
own chains that reached the label on the training questions the teacher did not cover.

Reflection (RPO on chosen / rejected chains, a few hundred steps at lr 1e-4) has not moved held-out accuracy on
the world beyond noise, while more *teacher* rationales do. Which is the limit: what the label-filtered chains
carry, or the update RPO makes from them? With `--self-taught-from W` each untaught training question gets one
chain that W's phase-1 model sampled in W's first reflect round and that reached the label, written as if the
teacher had written it, and phase 1 trains from scratch on all of them (the filter of STaR, Zelikman et al. 2022,
without its rationalization step). If held-out accuracy then moves like a larger teacher budget, the chains carry
it and RPO's update is the limit; if not, the chains do not. `--self-taught-filter truth` keeps only chains whose
recall and analyses are all true to the world (a filter no user has: it says what the label filter costs).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path

from ..core.records import Question
from ..errors import ConfigError
from ..rundir import RunDir, TeachDir
from ..storage import append_jsonl, read_jsonl
from ..teacher.filters import Rationale
from ..teacher.stages import STAGES, group_rows

FAMILY = "llama"  # whose chains teach: the family the check reflects with (the T5 never learned the look-up)


def chosen_chains(generations: Iterable[dict], skip: set[str], truth=None) -> list[tuple[Question, Rationale]]:
    """Per question of a round's self-generation not in `skip`, its first sampled chain that reached the label
    (the samples are independent, so the first is as good a draw as any), as a rationale; questions where no
    chain did are left out, as STaR leaves them. With `truth` (q -> the world's true recalls, true analyses per
    option) only chains whose every stage is true count."""
    out = []
    for g in generations:
        q = Question.from_dict(g["question"])
        if q.id in skip:
            continue
        for chain in g["chains"]:
            if chain.get("prediction") == q.answer and chain.get("recall") and chain.get("analyses") and (
                    truth is None or all_true(chain, *truth(q))):
                out.append((q, Rationale(knowledge=chain["recall"], answer=q.answer,
                                         explanations=tuple((label, text) for label, text in chain["analyses"]))))
                break
    return out


def all_true(chain: dict, facts: set[str], reasons: dict[str, set[str]]) -> bool:
    return chain["recall"] in facts and all(text in reasons.get(label, ()) for label, text in chain["analyses"])


def source_generations(source: Path, seed: int, mode: str) -> Path:
    """The first reflect round's self-generation of `source`'s phase-1 model (ConfigError if it never ran)."""
    path = RunDir(source / f"seed{seed}" / FAMILY / mode).reflect(1).generations
    if not path.exists():
        raise ConfigError(f"--self-taught-from {source}: no first reflect round of seed {seed}'s {FAMILY} {mode} "
                          f"there ({path} is missing): run that check with --rounds 1 or more first")
    return path


def same_world(source_data: Path, data: Path) -> None:
    """ConfigError unless both folders hold the same world and questions (the chains answer these questions)."""
    for name in ("world.json", "train.jsonl", "dev.jsonl", "test.jsonl"):
        if (source_data / name).read_bytes() != (data / name).read_bytes():
            raise ConfigError(f"--self-taught-from: {source_data / name} differs from {data / name}: the chains "
                              "must come from the same world and questions")


def add_self_taught(generations: Path, teach: TeachDir, truth, only_true: bool = False) -> dict:
    """Append the chosen chains of the questions without a teacher row to `teach`'s stage files (a rerun adds
    nothing twice: those questions then have rows). `truth(q)` gives the world's (true recalls, true analyses per
    option): the report's share of true stages among the added chains, and with `only_true` the filter."""
    taught = {r["qid"] for r in read_jsonl(teach.stage("recall"))}
    chains = chosen_chains(read_jsonl(generations), skip=taught, truth=truth if only_true else None)
    for q, rationale in chains:
        rows, _ = group_rows([(q, q.answer, [rationale])])
        for stage in STAGES:
            append_jsonl(teach.stage(stage), rows[stage])
    recall_true, analyses_true = [], []
    for q, r in chains:
        facts, reasons = truth(q)
        recall_true.append(r.knowledge in facts)
        analyses_true += [text in reasons.get(label, ()) for label, text in r.explanations]
    return {"self_taught": len(chains),
            "self_taught_recall_true": statistics.fmean(recall_true) if recall_true else None,
            "self_taught_analyses_true": statistics.fmean(analyses_true) if analyses_true else None}
