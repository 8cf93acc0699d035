"""Where the teacher's few-shot rationales come from (`teacher.fewshot_source`), and bootstrapping them.

    file       teacher.fewshot_path, else fewshot_rationales.json beside the data: the user's own examples
    embedded   the paper's hand-written set of csqa / obqa / strategyqa, or the set a preset or a generic
               dataset borrows (data.adapter.fewshot; custom data borrows csqa's)
    bootstrap  in-domain examples the teacher writes itself: it is asked, with the embedded set as the format
               demonstration, on `teacher.bootstrap_questions` training questions, and one reply per question
               is kept if it passes the same filters as every teacher reply and calls the labelled answer
               correct; the examples are saved to teach/fewshot_rationales.json, for the user to read
    auto       file if one is given or found, else the dataset's own embedded set, else bootstrap

Bootstrapping appends its replies to teach/bootstrap/replies.jsonl as they come, so a killed run resumes it
without asking twice; once written, teach/fewshot_rationales.json is reused as it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..core.records import Question
from ..data.loaders import load_fewshot
from ..errors import ConfigError
from ..rundir import TeachDir
from ..storage import atomic_write_json
from . import filters, prompt
from .asking import Replies, TeacherError, sample_round

OWN_SETS = ("csqa", "obqa", "strategyqa")  # the datasets the paper wrote few-shot rationales for


@dataclass(frozen=True)
class FewShot:
    examples: list[dict]
    source: str  # file | embedded | bootstrap
    origin: str  # where they came from, in words

    def describe(self) -> str:
        return f"{len(self.examples)} examples, {self.source}: {self.origin}"


def found_file(cfg: Config) -> str | None:
    """teacher.fewshot_path, else the fewshot_rationales.json beside the data, else None."""
    t, d = cfg.teacher, cfg.data
    if t.fewshot_path:
        return t.fewshot_path
    if d.path and (f := Path(d.path) / "fewshot_rationales.json").exists():
        return str(f)
    return None


def borrowed_set(cfg: Config) -> str:
    """The embedded set used for this dataset: its own, or the one its preset / adapter names."""
    d = cfg.data
    if d.name in OWN_SETS:
        return d.name
    if d.name == "custom":
        return "csqa"
    from ..data.adapter import resolve

    return resolve(d.name, d.adapter).fewshot


def pick_source(cfg: Config) -> str:
    source = cfg.teacher.fewshot_source
    if source != "auto":
        return source
    if found_file(cfg):
        return "file"
    return "embedded" if cfg.data.name in OWN_SETS else "bootstrap"


def as_example(q: Question, r: filters.Rationale) -> dict:
    """A teacher rationale as a few-shot example (a fewshot_rationales.json row, explanations in option order)."""
    return {"Q": q.stem, "Options": prompt.options_text(q), "Key Information": r.knowledge,
            "Explanations": [f"{label} is {'correct' if label == r.answer else 'incorrect'}. Because {reason}"
                             for label, reason in r.explanations],
            "Reference": "bootstrap"}


def pick_examples(questions: list[Question], lines: dict[str, list[dict]]) -> list[dict]:
    """Per question, in order, the first reply that parses and calls the labelled answer correct (if any)."""
    out = []
    for q in questions:
        replies = ((c["text"], c["finish_reason"]) for ln in lines.get(q.id, ()) for c in ln["completions"])
        parsed, _ = filters.filter_samples(replies, q.labels)
        if good := next((r for r in parsed if r.answer == q.answer), None):
            out.append(as_example(q, good))
    return out


def bootstrap(cfg: Config, model: str | None, train: list[Question], out: TeachDir) -> FewShot:
    t = cfg.teacher
    path = out.fewshot
    if path.exists():  # written by an earlier run: the prompt of its replies.jsonl was built from it
        examples = load_fewshot(cfg.data.name, str(path))
        return FewShot(examples, "bootstrap", f"reused from an earlier run ({path})")
    demo = borrowed_set(cfg)
    system = prompt.system_message(load_fewshot(demo), t.shots, seed=cfg.seed)
    picked = random.Random(cfg.seed).sample(train, min(t.bootstrap_questions, len(train)))
    replies = Replies(out.bootstrap_replies)
    todo = {q.id: filters.Ask(t.samples, t.max_tokens) for q in picked if not replies.has(q.id, 0)}
    if todo:
        sample_round(cfg, model, system, {q.id: q for q in picked}, todo, 0, replies, what="bootstrap few-shot")
    examples = pick_examples(picked, {q.id: replies.lines(q.id) for q in picked})
    if not examples:
        raise TeacherError(f"bootstrapping few-shot rationales: no reply on {len(picked)} training questions "
                           f"passed the filters with the labelled answer (see {replies.path}); give your own "
                           "examples with teacher.fewshot_path")
    atomic_write_json(path, examples)
    return FewShot(examples, "bootstrap", f"written by the teacher on {len(examples)} of {len(picked)} training "
                                          f"questions (format shown with the {demo} set) -> {path}")


def choose(cfg: Config, model: str | None, train: list[Question], out: TeachDir) -> FewShot:
    """The few-shot examples of this run's teacher prompt, and where they came from."""
    source = pick_source(cfg)
    if source == "file":
        if (f := found_file(cfg)) is None:
            raise ConfigError("teacher.fewshot_path: fewshot_source 'file' needs this key or a "
                              "fewshot_rationales.json beside the data")
        return FewShot(load_fewshot(cfg.data.name, f), "file", f)
    if source == "embedded":
        name = borrowed_set(cfg)
        lent = "" if name == cfg.data.name else f", borrowed for {cfg.data.name}"
        return FewShot(load_fewshot(name), "embedded", f"the paper's {name} set{lent}")
    return bootstrap(cfg, model, train, out)
