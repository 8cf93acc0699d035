"""A teacher that reasons by rule over a synthetic world (world/synth.py): the learning check's GPT-4o stand-in.

`sampler.backend: rules` (teacher.backend in practice), `model:` the world.json (or the synth folder holding
it). Teacher prompts (chat messages, teacher/prompt.py) are answered in the teacher's reply format:

    Key Information: <the general fact>
    Explanations: <label> is correct. Because <reason>
    <label> is incorrect. Because <reason> ...        (in the user turn's order)

Each of the n samples picks a wording style at random (temperature 0: the first style, every sample alike),
so the teacher's diversity filter has different Key Information to choose from. With probability
`teacher.error_rate` a sample reasons from one false fact to a wrong answer, half the time a false Key
Information (the rule or the entity's category names another option's category) and half the time a false
per-option fact (two options' categories, or two properties' owners, swapped). Either way another option is
called correct, so the teacher's consistency filter and its majority relabelling have real work. With
`teacher.error_scope: question` the error is a belief instead: drawn once per question, every sample of that
question reasons from the same false fact, the majority relabels it, and phase 1 trains on its wrong rationale
(as a real teacher's confident mistakes reach the student).

Plain-text prompts are the student's stage inputs (data/format.py): they get the true recall, analysis or
summary, so `sampler.backend: rules` is also an oracle student, the chain's upper bound.

Samples are a function of (sampler seed, GenParams.seed, prompt, sample index) only: the same request gives
the same replies in any batch order, on any replica.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from ..config import SamplerConfig
from ..core import format as fmt
from ..core.records import Question
from ..core.reply import reply_text
from ..errors import ConfigError, DataError
from ..sampling.base import Completion, GenParams, Prompt, Sampler
from .synth import STYLES, View, World, explain, load_world, parse_stem, reply_lines

_OPTION = re.compile(r"(?:^|, )([A-Z])\. ")
_GOLD = re.compile(r"^Explanations: ([A-Z]) is correct\. Because$", re.MULTILINE)


def parse_teacher_prompt(messages: list[dict]) -> Question:
    """The question (stem, options, the label the prompt calls correct) of a teacher prompt's user turn."""
    user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), None)
    if user is None:
        raise DataError("teacher prompt without a user message", field="prompt")
    lines = user.split("\n")
    at = next((i for i, line in enumerate(lines) if line.startswith("Options: ")), None)
    gold = _GOLD.search(user)
    if at is None or gold is None:
        raise DataError("not a teacher prompt (no 'Options:' line or no 'Explanations: X is correct.')",
                        field="prompt")
    text = lines[at].removeprefix("Options: ")
    marks = list(_OPTION.finditer(text))
    options = tuple((m.group(1), text[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(text)])
                    for i, m in enumerate(marks))
    return Question(id="", stem="\n".join(lines[:at]), options=options, answer=gold.group(1))


def corrupt(world: World, q: Question, rng: random.Random) -> View:
    """A view with one false fact that makes a random wrong option the answer (see the module doc)."""
    truth = world.truth
    kind, subject = parse_stem(world, q.stem)
    right = explain(world, q).answer
    wrong = dict(q.options)[rng.choice([lab for lab in q.labels if lab != right])]
    gold = dict(q.options)[right]
    false_key = rng.random() < 0.5
    if kind == "which":  # subject: the property; options: entities
        if false_key:  # "Only <wrong's category> <property>."
            return truth.with_owner(**{subject: truth.category[wrong]})
        return truth.with_category(**{wrong: truth.category[gold], gold: truth.category[wrong]})
    w, g = world.by_phrase[wrong].id, world.by_phrase[gold].id  # subject: the entity; options: properties
    if false_key:  # "A <entity> is a kind of <wrong property's owner>."
        return truth.with_category(**{subject: truth.owner[w]})
    return truth.with_owner(**{w: truth.owner[g], g: truth.owner[w]})


class RulesSampler(Sampler):
    light = True
    model_is = "a synth world (world.json or its folder, written by `tinythinker data synth`)"

    @classmethod
    def resolve(cls, model: str, section: str = "sampler") -> str:
        if not Path(model).exists():
            raise ConfigError(f"{section}.model: {model} not found (the rules backend needs {cls.model_is})")
        load_world(model)  # a bad world file is named now, before any work, not in a replica
        return model

    @classmethod
    def build(cls, cfg: SamplerConfig, model: str | None) -> RulesSampler:
        return cls(cfg.model_copy(update={"model": model or cfg.model}))

    def __init__(self, cfg: SamplerConfig):
        if not cfg.model:
            raise ConfigError(f"the rules backend needs {self.model_is}")
        self.world = load_world(cfg.model)
        self.error_rate = getattr(cfg, "error_rate", 0.0)  # TeacherConfig fields; student samplers: none
        self.error_scope = getattr(cfg, "error_scope", "sample")
        self.seed = cfg.seed

    def generate(self, prompts: list[Prompt], params: GenParams,
                 regexes: list[str | None] | None = None) -> list[list[Completion]]:
        # `regexes` are ignored: every reply already has the constrained shape.
        return [self._teacher(p, params) if isinstance(p, list) else self._student(p, params) for p in prompts]

    def _teacher(self, messages: list[dict], params: GenParams) -> list[Completion]:
        q = parse_teacher_prompt(messages)
        rng = random.Random(f"{self.seed}|{params.seed}|{messages[-1]['content']}")
        # a question-scope error is the teacher's belief: drawn once per question, the same in every sample and
        # every retry round (so not from params.seed)
        believed = None
        if self.error_scope == "question":
            belief = random.Random(f"{self.seed}|{messages[-1]['content']}")
            believed = corrupt(self.world, q, belief) if belief.random() < self.error_rate else None
        out = []
        for _ in range(params.n):
            style = rng.randrange(STYLES) if params.temperature > 0 else 0
            view = believed
            if self.error_scope == "sample":
                view = corrupt(self.world, q, rng) if rng.random() < self.error_rate else None
            ex = explain(self.world, q, view, style)
            out.append(Completion(reply_text(ex.knowledge, reply_lines(q, ex)), "stop", {"wrong": view is not None}))
        return out

    def _student(self, text: str, params: GenParams) -> list[Completion]:
        """The oracle: the true output of whichever stage `text` is the input of."""
        try:
            parts = fmt.parse_stage_input(text)
        except ValueError as e:
            raise DataError(f"rules backend: not a teacher prompt nor a stage input ({e})", field="prompt") from None
        q = Question(id="", stem=parts["stem"], options=tuple(parts["options"]), answer=parts["options"][0][0])
        ex = explain(self.world, q)
        if parts["stage"] == "recall":
            reply = ex.knowledge
        elif parts["stage"] == "analyze":
            reply = dict(ex.reasons)[parts["option"]]
        else:
            reply = fmt.summarize_target(ex.answer)
        return [Completion(reply) for _ in range(params.n)]

    def close(self) -> None:
        pass
