"""The synthetic learning-check dataset: held-out combinations, determinism, CSQA shape (pure, no Ray)."""

from __future__ import annotations

import json
import re

import pytest

from tinythinker_ray import cli
from tinythinker_ray.config import SynthConfig
from tinythinker_ray.data.loaders import load_benchmark, load_fewshot
from tinythinker_ray.errors import ConfigError, DataError
from tinythinker_ray.teacher.prompt import system_message
from tinythinker_ray.world import synth


def _asked(world, q):
    """(entity, property id) a question asks about, recomputed from its text and the world."""
    kind, subject = synth.parse_stem(world, q.stem)
    gold = dict(q.options)[q.answer]
    return (gold, subject) if kind == "which" else (subject, world.by_phrase[gold].id)


def _mentioned(world, q):
    """Every entity and property a question's text names (stem and options)."""
    kind, subject = synth.parse_stem(world, q.stem)
    texts = [t for _, t in q.options]
    if kind == "which":
        return set(texts), {subject}
    return {subject}, {world.by_phrase[t].id for t in texts}


@pytest.mark.parametrize("sc", [SynthConfig(), SynthConfig(seed=7, categories=5, entities=30, properties=15,
                                                            options=5, holdout=0.3, trait_share=0.2)])
def test_test_pairs_are_never_asked_in_training_but_their_facts_are(sc):
    world, qs = synth.build(sc)
    train_pairs = {_asked(world, q) for q in qs["train"]}
    train_entities = {e for e, _ in train_pairs}
    train_props = {p for _, p in train_pairs}
    assert train_entities == set(world.entities) and train_props == set(world.properties)
    for split in ("valid", "test"):
        asked = {_asked(world, q) for q in qs[split]}
        assert asked and not asked & train_pairs, split
        assert asked == set(world.pairs[split])
        for q in qs[split]:
            entities, props = _mentioned(world, q)
            assert entities <= train_entities and props <= train_props
    assert not set(world.pairs["valid"]) & set(world.pairs["test"])
    # every held-out pair is true: its entity's category owns its property
    assert all(world.properties[p].category == world.entities[e] for ps in world.pairs.values() for e, p in ps)


@pytest.mark.parametrize("key", ["fact", "link"])
def test_every_question_has_exactly_its_label_true_and_options_from_distinct_categories(key):
    world, qs = synth.build(SynthConfig(options=3, trait_share=0.5, key=key))
    kinds = set()
    for q in qs["train"] + qs["test"]:
        assert len(q.options) == 3
        assert synth.explain(world, q).answer == q.answer  # explain raises unless exactly one option holds
        kind, _ = synth.parse_stem(world, q.stem)
        kinds.add(kind)
        cats = [world.entities[t] if kind == "which" else world.properties[world.by_phrase[t].id].category
                for _, t in q.options]
        assert len(set(cats)) == len(cats)
    assert kinds == {"which", "trait"}
    answers = {q.answer for q in qs["train"]}
    assert answers == {"A", "B", "C"}  # the gold position is shuffled


def test_deterministic_under_the_seed():
    a, b, c = (synth.build(SynthConfig(seed=s)) for s in (3, 3, 4))
    assert a[0].to_dict() == b[0].to_dict() and a[1] == b[1]
    assert a[0].to_dict() != c[0].to_dict()


def test_writes_a_custom_dataset_world_and_fewshot_that_load(tmp_path):
    sc = SynthConfig(train=60, valid=10, test=20, options=4, fewshot=3)
    counts = synth.write(sc, tmp_path)
    assert counts == {"train": 60, "valid": 10, "test": 20}
    splits = load_benchmark("custom", str(tmp_path))
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (60, 10, 20)
    world = synth.load_world(tmp_path)
    assert world.to_dict() == synth.World.from_dict(json.loads((tmp_path / "world.json").read_text())).to_dict()
    assert [synth.explain(world, q).answer for q in splits.test] == [q.answer for q in splits.test]
    shots = load_fewshot("custom", str(tmp_path))
    assert len(shots) == 3 and shots[0]["Q"] == splits.train[0].stem
    assert shots[0]["Explanations"][0].startswith(f"{splits.train[0].answer} is correct. Because ")
    assert "Key Information:" in system_message(shots, 2, seed=0)
    row = json.loads((tmp_path / "test.jsonl").read_text().splitlines()[0])
    assert set(row) >= {"id", "answerKey", "question", "synth"} and row["synth"]["kind"] in ("which", "trait")


def test_data_synth_command(tmp_path, capsys):
    assert cli.main(["data", "synth", f"--run_dir={tmp_path}", "--synth.train", "40", "--synth.test", "8",
                     "--synth.valid", "4"]) == 0
    out = capsys.readouterr().out
    assert "chance 25%" in out and "So the answer is option" in out
    assert {p.name for p in (tmp_path / "synth").iterdir()} == {
        "train.jsonl", "dev.jsonl", "test.jsonl", "world.json", "fewshot_rationales.json"}
    assert cli.main(["data", "synth", f"--synth.out={tmp_path / 'x'}", "--synth.options", "9"]) == 2
    assert "synth.options" in capsys.readouterr().err


def test_unseen_entities_are_named_only_after_every_training_question_that_names_none():
    """synth.unseen 1: one entity per category that a teacher budget within the first questions never sees; they
    are still asked in training (by label), and held-out questions still ask about them."""
    world, qs = synth.build(SynthConfig(options=3, train=300, test=200, unseen=1))
    assert len(world.unseen) == 4 and {world.entities[e] for e in world.unseen} == set(world.categories)
    train = qs["train"]
    clean = synth.clean_prefix(world, train)
    assert 0 < clean < len(train)
    assert not any(synth.mentions(q, world.unseen) for q in train[:clean])
    assert all(synth.mentions(q, world.unseen) for q in train[clean:])
    assert {e for q in train[clean:] for e in _mentioned(world, q)[0]} >= set(world.unseen)
    assert any(synth.mentions(q, world.unseen) for q in qs["test"])
    # the same questions as without unseen entities, only reordered; and that world is unchanged by the option
    plain_world, plain = synth.build(SynthConfig(options=3, train=300, test=200))
    assert sorted(q.id for q in train) == sorted(q.id for q in plain["train"]) and qs["test"] == plain["test"]
    assert plain_world.unseen == [] and synth.clean_prefix(plain_world, plain["train"]) == 300
    assert synth.World.from_dict(world.to_dict()).unseen == world.unseen  # world.json keeps them


@pytest.mark.parametrize("key", ["fact", "link"])
def test_rationales_that_refer_to_it_never_write_a_name_and_still_hold_only_for_the_label(key):
    """synth.refer it: "a vell is a kind of zorb" becomes "it is a kind of zorb" (capitalized where the name phrase
    was), so a student never has to write a name, only to read it from the question."""
    named, it = (synth.build(SynthConfig(options=3, key=key, refer=r)) for r in ("name", "it"))
    world = it[0]
    for q in it[1]["train"][:60]:
        for style in range(synth.STYLES):
            ex, plain = synth.explain(world, q, style=style), synth.explain(named[0], q, style=style)
            assert ex.answer == q.answer == plain.answer
            reasons = zip(ex.reasons, plain.reasons, strict=True)
            pairs = [(ex.knowledge, plain.knowledge), *((r, p) for (_, r), (_, p) in reasons)]
            for text, by_name in pairs:
                assert not set(re.findall(r"\w+", text)) & set(world.entities), text
                names = set(re.findall(r"\w+", by_name)) & set(world.entities)
                assert text == by_name if not names else re.search(r"\b[iI]t\b", text), (text, by_name)
    assert synth.World.from_dict(world.to_dict()).refer == "it"


@pytest.mark.parametrize("kw, key", [
    (dict(options=5), "synth.options"),
    (dict(entities=6), "synth.entities"),
    (dict(properties=7), "synth.properties"),
    (dict(train=3), "synth.train"),
    (dict(holdout=0.01), "synth.holdout"),
    (dict(unseen=6), "synth.unseen"),
])
def test_bad_sizes_name_their_config_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        synth.build(SynthConfig(**kw))


def test_foreign_questions_and_worlds_are_data_errors(tmp_path):
    world, qs = synth.build(SynthConfig())
    with pytest.raises(DataError, match="not a question about this world"):
        synth.parse_stem(world, "Which of these can fly?")
    with pytest.raises(DataError, match="world file not found"):
        synth.load_world(tmp_path)
    (tmp_path / "world.json").write_text("{}")
    with pytest.raises(DataError, match="not a synth world"):
        synth.load_world(tmp_path / "world.json")


@pytest.mark.parametrize("key", ["fact", "link"])
def test_reasons_against_an_option_say_so_in_words(key):
    world, qs = synth.build(SynthConfig(key=key))
    negation = {"not", "no", "cannot", "only"}
    for q in qs["train"][:80]:
        for style in range(synth.STYLES):
            ex = synth.explain(world, q, style=style)
            for label, reason in ex.reasons:
                said = negation & set(reason.rstrip(".").replace(",", "").split())
                assert bool(said) == (label != ex.answer), (style, reason)


def _named(world, text: str) -> str:
    """The made-up word an option's text is about (an entity, or a property's word)."""
    return text if text in world.entities else world.by_phrase[text].word


def test_a_link_key_names_the_option_it_makes_true_and_the_reasons_follow_from_it(tmp_path):
    """`link`: the general fact names the answer's option (the combining is the recall's) and every reason can be
    read off it; `fact`: the general fact of a which-question names no option (the reasons do the combining)."""
    sc = SynthConfig(options=4, key="link", train=120, valid=10, test=20)
    world, qs = synth.build(sc)
    facts, _ = synth.build(sc.model_copy(update={"key": "fact"}))
    assert facts.to_dict() | {"key": "link"} == world.to_dict()  # the same world, only its wording differs
    for q in qs["train"] + qs["test"]:
        kind, _ = synth.parse_stem(world, q.stem)
        for style in range(synth.STYLES):
            ex = synth.explain(world, q, style=style)
            words = set(ex.knowledge.rstrip(".").replace(",", "").replace(";", "").lower().split())
            named = {lab for lab, t in q.options if _named(world, t) in words or _named(world, t) + "s" in words}
            assert named == {q.answer}, (style, ex.knowledge)
            owner = world.entities[dict(q.options)[q.answer]] if kind == "which" else world.entities[
                q.stem.split()[-1].rstrip("?")]
            assert owner in ex.knowledge.lower()  # the category that links the question to its answer
            fact = synth.explain(facts, q, style=style)
            assert fact.answer == ex.answer
            if kind == "which":
                assert not {t for _, t in q.options} & set(fact.knowledge.rstrip(".").split())
    synth.write(sc, tmp_path)
    assert synth.load_world(tmp_path).key == "link"
    bad = json.loads((tmp_path / "world.json").read_text()) | {"key": "bogus"}
    (tmp_path / "world.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match="not a synth world.*bogus"):
        synth.load_world(tmp_path)
