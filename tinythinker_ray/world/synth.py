"""`tinythinker data synth`: a seeded made-up world and multiple-choice questions over it (the learning check).

The world: categories ("a vell is a kind of zorb"), each owning properties no other category has ("zorbs can
glim", "pleks eat dorps"). Every word is made up, so a student trained from scratch knows only what the
training questions teach it. Two kinds of question, each answered by one general fact and one fact per option:

    which  "Which of these can glim?"   options: entities, one per category
           Recall:  "Only zorbs can glim."
           Analyze: "a vell is a kind of zorb, so it can glim." / "a tarn is a kind of plek, so it cannot glim."
    trait  "What is true of a vell?"    options: properties, one per category
           Recall:  "A vell is a kind of zorb."
           Analyze: "zorbs can glim, so a vell can glim." / "only pleks eat dorps, so a vell does not eat dorps."

With `synth.key: link` the general fact carries the link itself and each option's fact only compares with it,
so the recall is where the combining happens and the analyses follow from it:

    which  Recall:  "Only zorbs can glim, and a vell is a kind of zorb."
           Analyze: "the vell is a zorb, so it can glim." / "the tarn is not a zorb, so it cannot glim."
    trait  Recall:  "A vell is a kind of zorb, and zorbs can glim."
           Analyze: "zorbs can glim, so a vell can glim." / "zorbs do not eat dorps, so a vell does not eat dorps."

Every question asks about one true (entity, property) pair. The pairs are split once: validation and test ask
only pairs no training question asks, while every entity and every property (so every rule) is asked in
training, so a student scores on held-out questions only by combining facts it learned, not by remembering
answers. `explain` reasons over a `View` of the facts: the true one answers, a corrupted one is how the rules
teacher (world/rules.py) writes wrong rationales.

Writes, into synth.out (default <run_dir>/synth): train.jsonl, dev.jsonl, test.jsonl in CSQA's shape (load with
data.name custom, data.path <that folder>), world.json (the facts and the pair splits) and
fewshot_rationales.json (teacher exemplars from training questions: teacher.fewshot_path <that folder>).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, SynthConfig
from ..core.records import Question
from ..core.reply import option_order, options_text
from ..errors import ConfigError, DataError
from ..rundir import RunDir
from ..storage import atomic_write_json, write_jsonl

WORLD_FILE = "world.json"
SPLIT_FILES = {"train": "train.jsonl", "valid": "dev.jsonl", "test": "test.jsonl"}  # custom loader's names

# A property is a verb and a made-up word: (singular, plural, negated singular, negated plural).
VERBS = {
    "can": ("can {w}", "can {w}", "cannot {w}", "cannot {w}"),
    "eat": ("eats {w}s", "eat {w}s", "does not eat {w}s", "do not eat {w}s"),
    "have": ("has {w}s", "have {w}s", "does not have {w}s", "do not have {w}s"),
    "live": ("lives near {w}s", "live near {w}s", "does not live near {w}s", "do not live near {w}s"),
}
WHICH_STEM, TRAIT_STEM = "Which of these {p}?", "What is true of a {e}?"
_WHICH_RE, _TRAIT_RE = re.compile(r"Which of these (.+)\?"), re.compile(r"What is true of an? (\w+)\?")

# Wordings: a rationale picks one style index and uses it for its Key Information and every option, so the
# samples of one question differ in wording (the teacher's diversity filter has something to choose from).
# Every reason against an option says so in words (not, no, cannot, only): the summary can be read off them.
# Fields: e entity, c/cs its category (plural), o/os the category owning the property, p_* the property.
# World words are never capitalized: a student's tokenizer then has one token per made-up word.
WHICH_KEY = ("All {os} {p_pl}.", "Only {os} {p_pl}.", "Of all kinds of things, only the {o} {p_sg}.",
             "Whatever {p_sg} is a {o}.")
WHICH_YES = ("a {e} is a kind of {c}, so it {p_sg}.", "{e} is one of the {cs}, and {cs} {p_pl}.",
             "being a {c}, a {e} {p_sg}.", "a {e} is a {c}, and every {c} {p_sg}.")
WHICH_NO = ("a {e} is a kind of {c}, so it {p_neg_sg}.", "{e} is one of the {cs}, and {cs} {p_neg_pl}.",
            "being a {c}, a {e} {p_neg_sg}.", "a {e} is a {c}, and no {c} {p_sg}.")
TRAIT_KEY = ("A {e} is a kind of {c}.", "The {e} belongs to the {cs}.", "Every {e} is a {c}.",
             "The {e} is one of the {cs}.")
TRAIT_YES = ("{os} {p_pl}, so a {e} {p_sg}.", "a {e} is a {c}, and {cs} {p_pl}.",
             "since {os} {p_pl}, a {e} {p_sg} too.", "every {o} {p_sg}, and a {e} is a {o}.")
TRAIT_NO = ("only {os} {p_pl}, so a {e} {p_neg_sg}.", "a {e} is a {c}, and {cs} {p_neg_pl}.",
            "since only {os} {p_pl}, a {e} {p_neg_sg}.", "only a {o} {p_sg}, and a {e} is a {c}, not a {o}.")
# synth.key link: the general fact names the option that holds, and the reasons only compare each option with it
WHICH_LINK_KEY = ("Only {os} {p_pl}, and a {e} is a kind of {o}.", "All {os} {p_pl}; the {e} is one of the {os}.",
                  "Of all kinds of things, only the {o} {p_sg}, and a {e} is a {o}.",
                  "Whatever {p_sg} is a {o}, and every {e} is a {o}.")
WHICH_LINK_YES = ("the {e} is a {o}, so it {p_sg}.", "{e} is one of the {os}, and {os} {p_pl}.",
                  "being a {o}, a {e} {p_sg}.", "a {e} is a {o}, and every {o} {p_sg}.")
WHICH_LINK_NO = ("the {e} is not a {o}, so it {p_neg_sg}.", "{e} is not one of the {os}, so it {p_neg_sg}.",
                 "not being a {o}, a {e} {p_neg_sg}.", "a {e} is no {o}, and only a {o} {p_sg}.")
TRAIT_LINK_KEY = ("A {e} is a kind of {c}, and {cs} {p_pl}.", "The {e} belongs to the {cs}, and every {c} {p_sg}.",
                  "Every {e} is a {c}, and all {cs} {p_pl}.", "The {e} is one of the {cs}, which {p_pl}.")
TRAIT_LINK_YES = ("{cs} {p_pl}, so a {e} {p_sg}.", "a {e} is a {c}, and {cs} {p_pl}.",
                  "since {cs} {p_pl}, a {e} {p_sg} too.", "every {c} {p_sg}, and a {e} is a {c}.")
TRAIT_LINK_NO = ("{cs} {p_neg_pl}, so a {e} {p_neg_sg}.", "a {e} is a {c}, and {cs} {p_neg_pl}.",
                 "since {cs} {p_neg_pl}, a {e} {p_neg_sg} either.", "no {c} {p_sg}, and a {e} is a {c}.")
# key -> question kind -> (general fact, reason for, reason against)
TEMPLATES = {"fact": {"which": (WHICH_KEY, WHICH_YES, WHICH_NO), "trait": (TRAIT_KEY, TRAIT_YES, TRAIT_NO)},
             "link": {"which": (WHICH_LINK_KEY, WHICH_LINK_YES, WHICH_LINK_NO),
                      "trait": (TRAIT_LINK_KEY, TRAIT_LINK_YES, TRAIT_LINK_NO)}}
STYLES = len(WHICH_KEY)

_ONSETS = "b d f g k l m n p r t v z br dr gl pl sk sn tr".split()
_VOWELS = "a e i o u".split()
_CODAS = "l m n r t k p d g rn lk nd mp".split()
_TEMPLATE_WORDS = {w for t in (*(t for key in TEMPLATES.values() for ts in key.values() for group in ts for t in group),
                               *(p for v in VERBS.values() for p in v), WHICH_STEM, TRAIT_STEM)
                   for w in re.findall(r"[a-z]+", t.lower())}


# ----- the world ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prop:
    id: str
    verb: str  # a key of VERBS
    word: str
    category: str  # the one category that has it

    def phrase(self, form: int) -> str:
        """0 singular ("eats dorps"), 1 plural, 2 negated singular, 3 negated plural."""
        return VERBS[self.verb][form].format(w=self.word)

    @property
    def sg(self) -> str:
        return self.phrase(0)


@dataclass(frozen=True)
class View:
    """What a rationale takes to be true: each entity's category and each property's owning category."""

    category: dict[str, str]  # entity -> category
    owner: dict[str, str]  # property id -> category

    def with_category(self, **changes: str) -> View:
        return View({**self.category, **changes}, self.owner)

    def with_owner(self, **changes: str) -> View:
        return View(self.category, {**self.owner, **changes})


@dataclass
class World:
    categories: list[str]
    entities: dict[str, str]  # entity -> category
    properties: dict[str, Prop]  # id -> Prop
    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # split -> (entity, property id)
    key: str = "fact"  # what the general fact says: a key of TEMPLATES (synth.key)
    unseen: list[str] = field(default_factory=list)  # entities only the last training questions mention (synth.unseen)
    refer: str = "name"  # "it": rationales say "it" for the entity they reason about (synth.refer)

    def __post_init__(self):
        self.by_phrase = {p.sg: p for p in self.properties.values()}

    @property
    def truth(self) -> View:
        return View(dict(self.entities), {pid: p.category for pid, p in self.properties.items()})

    def members(self, category: str) -> list[str]:
        return [e for e, c in self.entities.items() if c == category]

    def props_of(self, category: str) -> list[str]:
        return [pid for pid, p in self.properties.items() if p.category == category]

    def to_dict(self) -> dict:
        return {"categories": self.categories, "entities": self.entities,
                "properties": [vars(p) for p in self.properties.values()],
                "pairs": {s: [list(p) for p in ps] for s, ps in self.pairs.items()}, "key": self.key,
                "unseen": self.unseen, "refer": self.refer}

    @classmethod
    def from_dict(cls, d: dict) -> World:
        props = {p["id"]: Prop(**p) for p in d["properties"]}
        if d.get("key", "fact") not in TEMPLATES:
            raise KeyError(f"key {d['key']!r} is none of {sorted(TEMPLATES)}")
        return cls(list(d["categories"]), dict(d["entities"]), props,
                   {s: [tuple(p) for p in ps] for s, ps in d.get("pairs", {}).items()}, d.get("key", "fact"),
                   list(d.get("unseen", [])), d.get("refer", "name"))


def load_world(path: str | Path) -> World:
    """world.json, or the synth folder holding it."""
    p = Path(path)
    f = p / WORLD_FILE if p.is_dir() else p
    try:
        return World.from_dict(json.loads(f.read_text()))
    except FileNotFoundError:
        raise DataError("world file not found (write one with `tinythinker data synth`)", file=str(f)) from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"not a synth world ({type(e).__name__}: {e})", file=str(f)) from None


def _words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
        if w not in taken and w not in _TEMPLATE_WORDS:
            taken.add(w)
            taken.add(w + "s")  # plurals must not collide with another word either
            out.append(w)
    return out


def make_world(sc: SynthConfig) -> World:
    """Categories, entities and properties spread round-robin, then the (entity, property) pairs split."""
    if sc.options > sc.categories:
        raise ConfigError(f"config key 'synth.options': {sc.options} options need as many categories "
                          f"(synth.categories is {sc.categories}): every option comes from another category")
    for key, n in (("entities", sc.entities), ("properties", sc.properties)):
        if n < 2 * sc.categories:
            raise ConfigError(f"config key 'synth.{key}': needs at least 2 per category ({2 * sc.categories}), "
                              f"got {n}: a pair can only be held out if its entity and property have others")
    if sc.unseen >= sc.entities // sc.categories:
        raise ConfigError(f"config key 'synth.unseen': {sc.unseen} of the {sc.entities // sc.categories} entities per "
                          "category leaves no category an entity a rationale may mention")
    rng = random.Random(f"synth-world:{sc.seed}")
    taken: set[str] = set()
    categories = _words(rng, sc.categories, 2, taken)
    # two syllables throughout: one-syllable names too often come out as English words ("but", "pod")
    entities = {e: categories[i % sc.categories] for i, e in enumerate(_words(rng, sc.entities, 2, taken))}
    verbs = list(VERBS)
    props = {f"p{i}": Prop(f"p{i}", verbs[rng.randrange(len(verbs))], w, categories[i % sc.categories])
             for i, w in enumerate(_words(rng, sc.properties, 2, taken))}
    world = World(categories, entities, props, key=sc.key, refer=sc.refer)
    world.pairs = split_pairs(world, sc.holdout, rng)
    world.unseen = [e for c in categories for e in world.members(c)[len(world.members(c)) - sc.unseen:]]
    return world


def split_pairs(world: World, holdout: float, rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    """Hold out ~`holdout` of each category's true pairs, never the last training pair of an entity or a
    property; the held-out pairs alternate between test and valid."""
    train, held = [], []
    for c in world.categories:
        cells = [(e, p) for e in world.members(c) for p in world.props_of(c)]
        rng.shuffle(cells)
        left_e = {e: len(world.props_of(c)) for e in world.members(c)}
        left_p = {p: len(world.members(c)) for p in world.props_of(c)}
        target = round(holdout * len(cells))
        for e, p in cells:
            if target > 0 and left_e[e] > 1 and left_p[p] > 1:
                held.append((e, p))
                left_e[e] -= 1
                left_p[p] -= 1
                target -= 1
            else:
                train.append((e, p))
    rng.shuffle(held)
    pairs = {"train": cover_first(train, rng), "valid": held[1::2], "test": held[0::2]}
    for split in ("valid", "test"):
        if not pairs[split]:
            raise ConfigError(f"config key 'synth.holdout': {holdout} holds out no {split} pair in this world "
                              "(raise synth.holdout or synth.entities / synth.properties)")
    return pairs


def cover_first(pairs: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
    """Shuffled pairs, those that first show an entity or a property moved to the front."""
    pairs = list(pairs)
    rng.shuffle(pairs)
    seen: set[str] = set()
    first, rest = [], []
    for e, p in pairs:
        (first if e not in seen or p not in seen else rest).append((e, p))
        seen |= {e, p}
    return first + rest


# ----- questions and their reasoning -------------------------------------------------------------------------

def make_question(world: World, rng: random.Random, qid: str, pair: tuple[str, str], kind: str,
                  options: int) -> Question:
    """A question about the true pair (entity, property): `which` lists entities, `trait` lists properties;
    each distractor comes from another category (so exactly one option is right)."""
    entity, pid = pair
    category = world.entities[entity]
    others = rng.sample([c for c in world.categories if c != category], options - 1)
    if kind == "which":
        stem = WHICH_STEM.format(p=world.properties[pid].sg)
        texts = [entity] + [rng.choice(world.members(c)) for c in others]
    else:
        stem = TRAIT_STEM.format(e=entity)
        texts = [world.properties[pid].sg] + [world.properties[rng.choice(world.props_of(c))].sg for c in others]
    order = list(range(options))
    rng.shuffle(order)
    labels = [chr(ord("A") + i) for i in range(options)]
    opts = tuple((labels[j], texts[i]) for j, i in enumerate(order))
    return Question(id=qid, stem=stem, options=opts, answer=labels[order.index(0)])


def parse_stem(world: World, stem: str) -> tuple[str, str]:
    """("which", property id) or ("trait", entity) for a stem this world wrote; DataError otherwise."""
    if (m := _WHICH_RE.fullmatch(stem.strip())) and m.group(1) in world.by_phrase:
        return "which", world.by_phrase[m.group(1)].id
    if (m := _TRAIT_RE.fullmatch(stem.strip())) and m.group(1) in world.entities:
        return "trait", m.group(1)
    raise DataError(f"not a question about this world: {stem!r}", field="question.stem")


@dataclass(frozen=True)
class Explanation:
    knowledge: str  # the general fact (Key Information / Recall)
    reasons: tuple[tuple[str, str], ...]  # (label, reason) in option order
    answer: str  # the option that holds under the view


def _fields(view: View, entity: str, prop: Prop) -> dict[str, str]:
    """Template fields of an (entity, property) pair, as `view` has them."""
    c, o = view.category[entity], view.owner[prop.id]
    return {"e": entity, "c": c, "cs": c + "s", "o": o, "os": o + "s", "p_sg": prop.phrase(0),
            "p_pl": prop.phrase(1), "p_neg_sg": prop.phrase(2), "p_neg_pl": prop.phrase(3)}


def explain(world: World, q: Question, view: View | None = None, style: int = 0) -> Explanation:
    """The general fact and one reason per option, as `view` (default: the truth) has them, in wording `style`."""
    view = view or world.truth
    kind, subject = parse_stem(world, q.stem)
    general, *yes_no = TEMPLATES[world.key][kind]
    if kind == "which":
        prop = world.properties[subject]
        known, what = world.entities, "an entity"
    else:
        known, what = world.by_phrase, "a property"
    reasons, holds = [], []
    for label, text in q.options:
        if text not in known:
            raise DataError(f"option {label} ({text!r}) is not {what} of this world", field="question.choices")
        f = _fields(view, text, prop) if kind == "which" else _fields(view, subject, world.by_phrase[text])
        yes = f["c"] == f["o"]
        reasons.append((label, _refer(world, yes_no[not yes][style].format(**f), f["e"])))
        if yes:
            holds.append((label, f))
    if len(holds) != 1:
        raise DataError(f"{len(holds)} options hold for {q.stem!r} (each question has exactly one answer)",
                        field="question.choices")
    # the holding option's fields have every field a general fact uses (a `link` one names that option)
    return Explanation(_refer(world, general[style].format(**holds[0][1]), holds[0][1]["e"]), tuple(reasons),
                       holds[0][0])


def _refer(world: World, text: str, entity: str) -> str:
    """`text` with "a/the/every <entity>" said as "it" when the world refers so (synth.refer): a student that
    only reads names can reason about an entity no rationale named (synth.unseen) without writing its name."""
    if world.refer == "name":
        return text
    return re.sub(rf"\b(?:(?:a|an|the|every) )?{entity}\b", lambda m: "It" if m.group()[0].isupper() else "it", text,
                  flags=re.IGNORECASE)


def reply_lines(q: Question, ex: Explanation) -> list[str]:
    """The teacher's explanation lines for `ex`, in the teacher prompt's order (the label's option first)."""

    reasons = dict(ex.reasons)
    return [f"{lab} is {'correct' if lab == ex.answer else 'incorrect'}. Because {reasons[lab]}"
            for lab in option_order(q)]


# ----- the dataset -------------------------------------------------------------------------------------------

def make_questions(world: World, sc: SynthConfig) -> dict[str, list[Question]]:
    """Per split, questions cycling through that split's pairs (training pairs come cover-first, so every entity
    and property is asked in training when synth.train is at least the cover's size)."""
    rng = random.Random(f"synth-questions:{sc.seed}")
    cover = len(cover_prefix(world.pairs["train"]))
    if sc.train < cover:
        raise ConfigError(f"config key 'synth.train': {sc.train} questions cannot ask about every entity and "
                          f"property once; this world needs at least {cover}")
    out = {}
    for split in ("train", "valid", "test"):
        pairs, n = world.pairs[split], getattr(sc, split)
        out[split] = [make_question(world, rng, f"synth-{split}-{i:05d}", pairs[i % len(pairs)],
                                    "trait" if rng.random() < sc.trait_share else "which", sc.options)
                      for i in range(n)]
    # questions naming an unseen entity (synth.unseen) go last; the sort is stable, so the cover prefix is kept
    out["train"].sort(key=lambda q: mentions(q, world.unseen))
    return out


def mentions(q: Question, entities: list[str]) -> bool:
    """Whether a question names any of `entities` (as its subject or as an option)."""
    words = set(re.findall(r"\w+", " ".join([q.stem, *(t for _, t in q.options)])))
    return not words.isdisjoint(entities)


def clean_prefix(world: World, questions: list[Question]) -> int:
    """How many leading questions mention no unseen entity: the largest teacher budget that keeps them unseen."""
    return next((i for i, q in enumerate(questions) if mentions(q, world.unseen)), len(questions))


def cover_prefix(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The leading pairs of a cover-first list that each show a new entity or property."""
    seen: set[str] = set()
    out = []
    for e, p in pairs:
        if e in seen and p in seen:
            break
        out.append((e, p))
        seen |= {e, p}
    return out


def csqa_dict(q: Question, world: World) -> dict:
    """A CSQA-shaped row (what `load_benchmark("custom", ...)` reads); "synth" says what it asks, for checks."""
    kind, subject = parse_stem(world, q.stem)
    gold = dict(q.options)[q.answer]
    entity, pid = (gold, subject) if kind == "which" else (subject, world.by_phrase[gold].id)
    return {"id": q.id, "answerKey": q.answer,
            "question": {"stem": q.stem, "question_concept": entity,
                         "choices": [{"label": lab, "text": t} for lab, t in q.options]},
            "synth": {"kind": kind, "entity": entity, "property": pid}}


def fewshot(world: World, questions: list[Question], k: int) -> list[dict]:
    """Teacher exemplars ({Q, Options, Key Information, Explanations}) from the first k questions, each in
    another wording style."""

    out = []
    for i, q in enumerate(questions[:k]):
        ex = explain(world, q, style=i % STYLES)
        out.append({"Q": q.stem, "Options": options_text(q), "Key Information": ex.knowledge,
                    "Explanations": reply_lines(q, ex), "Reference": "synth"})
    return out


def build(sc: SynthConfig) -> tuple[World, dict[str, list[Question]]]:
    world = make_world(sc)
    return world, make_questions(world, sc)


def write(sc: SynthConfig, out: str | Path) -> dict[str, int]:
    """Write the dataset, world.json and fewshot_rationales.json into `out`; returns question counts."""
    out = Path(out)
    world, questions = build(sc)
    for split, qs in questions.items():
        write_jsonl(out / SPLIT_FILES[split], [csqa_dict(q, world) for q in qs])
    atomic_write_json(out / WORLD_FILE, world.to_dict() | {"config": sc.model_dump()})
    atomic_write_json(out / "fewshot_rationales.json", fewshot(world, questions["train"], sc.fewshot))
    return {s: len(qs) for s, qs in questions.items()}


def out_dir(cfg: Config) -> Path:
    return Path(cfg.synth.out) if cfg.synth.out else RunDir(cfg.run_dir).synth
