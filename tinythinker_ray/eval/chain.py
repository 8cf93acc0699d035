"""Three-stage chain inference against any Sampler: recall, then analyze once per option, then summarize.

Each stage is one batched `generate` call over every question (and every option, and every sample), so one
engine and its prefix cache serve all three stages. Used by `eval`, by evaluation during training, by
self-generation in phase 2 and by `ask`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from ..data import format as fmt
from ..data.records import Question
from ..sampling.base import GenParams, Sampler

STAGE_DEFAULT = GenParams(max_tokens=96)  # greedy; GenParams is frozen, so sharing the default is safe
SUMMARY_DEFAULT = GenParams(max_tokens=16)


@dataclass
class ChainResult:
    question_id: str
    recall: str | None
    analyses: list[tuple[str, str]] | None
    summary: str
    prediction: str | None
    label: str

    @property
    def correct(self) -> bool:
        return self.prediction == self.label

    def to_dict(self) -> dict:
        d = asdict(self)
        d["correct"] = self.correct
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ChainResult:
        """Inverse of `to_dict` (results travel through Ray Data and results.jsonl as JSON)."""
        analyses = [tuple(a) for a in d["analyses"]] if d.get("analyses") is not None else None
        return cls(d["question_id"], d.get("recall"), analyses, d["summary"], d.get("prediction"), d["label"])


def stages_of(mode: str) -> tuple[bool, bool]:
    """(uses recall, uses analyze) for a stage mode (phase-1 modes; phase-2 always runs the full chain)."""
    return "recall" in mode, "analyze" in mode


def run_chain(sampler: Sampler, questions: list[Question], mode: str = "recall_analyze_summarize", *,
              recall: GenParams = STAGE_DEFAULT, analyze: GenParams = STAGE_DEFAULT,
              summarize: GenParams = SUMMARY_DEFAULT, fixed_recalls: list[str] | None = None
              ) -> list[list[ChainResult]]:
    """For each question, `recall.n * analyze.n` chains (one per recall sample x analysis sample).

    `fixed_recalls` (one per question) skips recall generation: phase 2 samples analyses for a chosen recall.
    """
    use_recall, use_analyze = stages_of(mode)
    # 1. recall: n samples per question
    if fixed_recalls is not None:
        recalls = [[r] for r in fixed_recalls]
    elif use_recall:
        outs = sampler.generate([fmt.recall_input(q) for q in questions], recall)
        recalls = [[fmt.ensure_period(c.text) for c in cs] for cs in outs]
    else:
        recalls = [[None] for _ in questions]
    # 2. analyze: every (question, recall) x option, n samples each; sample k of a chain takes sample k per option
    chains: list[tuple[int, str | None, list | None]] = []  # (question index, recall, analyses)
    if use_analyze:
        keys = [(qi, r) for qi, rs in enumerate(recalls) for r in rs]
        prompts = [fmt.analyze_input(questions[qi], label, r) for qi, r in keys for label in questions[qi].labels]
        outs = iter(sampler.generate(prompts, analyze))
        for qi, r in keys:
            per_option = [(label, next(outs)) for label in questions[qi].labels]
            for k in range(analyze.n):
                chains.append((qi, r, [(label, fmt.ensure_period(cs[k].text)) for label, cs in per_option]))
    else:
        chains = [(qi, r, None) for qi, rs in enumerate(recalls) for r in rs]
    # 3. summarize: greedy by default, one per chain
    prompts = [fmt.summarize_input(questions[qi], r, a) for qi, r, a in chains]
    summaries = sampler.generate(prompts, summarize)
    results: list[list[ChainResult]] = [[] for _ in questions]
    for (qi, r, a), cs in zip(chains, summaries, strict=True):
        text = cs[0].text
        q = questions[qi]
        results[qi].append(ChainResult(q.id, r, a, text, fmt.extract_answer(text), q.answer))
    return results


def vote(predictions: list[str | None]) -> str | None:
    """Self-consistency: the most common parsed answer (unparsed ones do not vote; ties -> first seen)."""
    counts = Counter(p for p in predictions if p is not None)
    return counts.most_common(1)[0][0] if counts else None


def accuracy(results: list[list[ChainResult]]) -> dict:
    """Accuracy of the first chain per question and of the self-consistency vote over all chains."""
    n = max(len(results), 1)
    first = sum(rs[0].correct for rs in results if rs) / n
    sc = sum(vote([r.prediction for r in rs]) == rs[0].label for rs in results if rs) / n
    return {"accuracy": first, "sc_accuracy": sc, "questions": len(results)}
