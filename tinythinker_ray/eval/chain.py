"""Three-stage chain inference against any Sampler: recall, then analyze once per option, then summarize.

Each stage is one batched `generate` call over every question (and every option, and every sample), so one
engine and its prefix cache serve all three stages. Used by `eval`, by evaluation during training (`ChainEval`),
by self-generation in phase 2 and by `ask`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from ..core import format as fmt
from ..core.modes import FULL, MODES, Mode, analyze_recall
from ..core.records import Question
from ..sampling.base import GenParams, Sampler

STAGE_DEFAULT = GenParams(max_tokens=200)  # greedy; GenParams is frozen, so sharing the default is safe
SUMMARY_DEFAULT = GenParams(max_tokens=16)


@dataclass
class ChainResult:
    question_id: str
    recall: str | None
    analyses: list[tuple[str, str]] | None
    summary: str
    label: str

    @property
    def prediction(self) -> str | None:
        """The answer as the authors score it: "the answer is option X." exactly (core/format.ANSWER_RE)."""
        return fmt.extract_answer(self.summary)

    @property
    def lenient_prediction(self) -> str | None:
        return fmt.extract_answer(self.summary, lenient=True)

    @property
    def correct(self) -> bool:
        return self.prediction == self.label

    def to_dict(self) -> dict:
        return asdict(self) | {"prediction": self.prediction, "lenient_prediction": self.lenient_prediction,
                               "correct": self.correct}

    @classmethod
    def from_dict(cls, d: dict) -> ChainResult:
        """Inverse of `to_dict` (results travel through Ray Data and results.jsonl as JSON); the predictions are
        read from the summary again, so results written by an older scorer are scored like new ones."""
        analyses = [tuple(a) for a in d["analyses"]] if d.get("analyses") is not None else None
        return cls(d["question_id"], d.get("recall"), analyses, d["summary"], d["label"])


def run_chain(sampler: Sampler, questions: list[Question], mode: Mode = MODES[FULL], *,
              recall: GenParams = STAGE_DEFAULT, analyze: GenParams = STAGE_DEFAULT,
              summarize: GenParams = SUMMARY_DEFAULT, fixed_recalls: list[str] | None = None
              ) -> list[list[ChainResult]]:
    """For each question, `recall.n * analyze.n` chains (one per recall sample x analysis sample).

    `mode` (core/modes.py) says which stages run and what each stage's input shows. `fixed_recalls` (one per
    question) skips recall generation: phase 2 samples analyses for a chosen recall.
    """
    # 1. recall: n samples per question
    if fixed_recalls is not None:
        recalls = [[r] for r in fixed_recalls]
    elif mode.recall:
        outs = sampler.generate([fmt.recall_input(q) for q in questions], recall)
        recalls = [[fmt.ensure_period(c.text) for c in cs] for cs in outs]
    else:
        recalls = [[None] for _ in questions]
    # 2. analyze: every (question, recall) x option, n samples each; sample k of a chain takes sample k per option
    chains: list[tuple[int, str | None, list | None]] = []  # (question index, recall, analyses)
    if mode.analyze:
        keys = [(qi, r) for qi, rs in enumerate(recalls) for r in rs]
        prompts = [fmt.analyze_input(questions[qi], label, analyze_recall(mode, r))
                   for qi, r in keys for label in questions[qi].labels]
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
        results[qi].append(ChainResult(q.id, r, a, text, q.answer))
    return results


def vote(predictions: list[str | None]) -> str | None:
    """Self-consistency as the authors count it: the most common answer, an unparsed one (None) voting too, so
    mostly unparsed chains give no answer; ties go to the first seen (Counter.most_common)."""
    return Counter(predictions).most_common(1)[0][0] if predictions else None


def accuracy(results: list[list[ChainResult]]) -> dict:
    """Accuracy of the first chain per question (strict, the headline, and lenient beside it) and of the
    self-consistency vote over all chains."""
    n = max(len(results), 1)
    first = sum(rs[0].correct for rs in results if rs) / n
    lenient = sum(rs[0].lenient_prediction == rs[0].label for rs in results if rs) / n
    sc = sum(vote([r.prediction for r in rs]) == rs[0].label for rs in results if rs) / n
    return {"accuracy": first, "lenient_accuracy": lenient, "sc_accuracy": sc, "questions": len(results)}


@dataclass(frozen=True)
class ChainEval:
    """The `evaluate` of a training run (train/loop.fit): greedy chains of the live model on questions, in the
    training process (rank 0), through HF `generate`."""

    questions: list[dict]  # Question.to_dict rows
    mode: Mode = MODES[FULL]
    max_new_tokens: int = 200
    batch_size: int = 32

    def __call__(self, model, tok) -> dict:
        from ..sampling.hf import HFSampler

        sampler = HFSampler(model=model, tokenizer=tok, batch_size=self.batch_size)
        stage = GenParams(max_tokens=self.max_new_tokens)
        results = run_chain(sampler, [Question.from_dict(q) for q in self.questions], self.mode,
                            recall=stage, analyze=stage, summarize=SUMMARY_DEFAULT)
        scores = accuracy(results)
        return {"val_accuracy": scores["accuracy"], "val_lenient_accuracy": scores["lenient_accuracy"],
                "val_questions": scores["questions"]}
