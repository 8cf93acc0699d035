"""The rule teacher over a synthetic world: replies the teacher's filters accept, errors at the configured
rate, varied wording, determinism; and the oracle student answering stage inputs (pure, no Ray)."""

from __future__ import annotations

import random

import pytest

from tinythinker_ray.config import SamplerConfig, SynthConfig, TeacherConfig
from tinythinker_ray.core.modes import MODES
from tinythinker_ray.data.loaders import load_benchmark, load_fewshot
from tinythinker_ray.errors import ConfigError, DataError
from tinythinker_ray.eval.chain import accuracy, run_chain
from tinythinker_ray.sampling.base import GenParams
from tinythinker_ray.sampling.pool import make_sampler
from tinythinker_ray.teacher import filters, prompt
from tinythinker_ray.world import synth
from tinythinker_ray.world.rules import RulesSampler, parse_teacher_prompt


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth.write(SynthConfig(train=300, valid=10, test=40, options=4), out)
    splits = load_benchmark("custom", str(out))
    system = prompt.system_message(load_fewshot("custom", str(out)), 3, seed=0)
    return out, splits, system


def _teacher(out, **kw) -> RulesSampler:
    return make_sampler(TeacherConfig(backend="rules", model=str(out / "world.json"), **kw))


def _parsed(sampler, questions, system, n=4, temperature=0.8, seed=0):
    chats = [prompt.messages(q, system) for q in questions]
    outs = sampler.generate(chats, GenParams(n=n, temperature=temperature, seed=seed))
    assert [len(cs) for cs in outs] == [n] * len(questions)
    return [[filters.parse_reply(c.text, q.labels, c.finish_reason) for c in cs] for q, cs in zip(questions, outs, strict=True)]


def test_prompt_round_trip(data):
    _, splits, system = data
    for q in splits.train[:20]:
        back = parse_teacher_prompt(prompt.messages(q, system))
        assert (back.stem, back.options, back.answer) == (q.stem, q.options, q.answer)


def test_replies_parse_and_are_right_without_errors(data):
    out, splits, system = data
    world = synth.load_world(out)
    qs = splits.train[:60]
    for q, rationales in zip(qs, _parsed(_teacher(out), qs, system), strict=True):
        for r in rationales:
            assert isinstance(r, filters.Rationale), r
            assert r.answer == q.answer and [lab for lab, _ in r.explanations] == q.labels
        kind, subject = synth.parse_stem(world, q.stem)
        gold = dict(q.options)[q.answer]
        category = world.entities[gold if kind == "which" else subject]
        assert all(category in r.knowledge.lower() for r in rationales)  # the general fact names the category


def test_wording_varies_across_samples_and_the_diversity_filter_can_pick(data):
    out, splits, system = data
    q = splits.train[0]
    (rationales,) = _parsed(_teacher(out), [q], system, n=8)
    assert len({r.knowledge for r in rationales}) >= 3
    picked = filters.select_diverse(rationales, 4, 10, random.Random(0))
    assert len({r.knowledge for r in picked}) >= 2
    (greedy,) = _parsed(_teacher(out), [q], system, n=3, temperature=0.0)
    assert len({r.knowledge for r in greedy}) == 1


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.6])
def test_error_rate_is_respected(data, rate):
    out, splits, system = data
    qs = splits.train[:250]
    parsed = _parsed(_teacher(out, error_rate=rate), qs, system, n=8)
    wrong = [r.answer != q.answer for q, rs in zip(qs, parsed, strict=True) for r in rs]
    assert all(isinstance(r, filters.Rationale) for rs in parsed for r in rs)  # wrong, but well-formed
    # 2000 samples: the binomial std is at most 0.011, so 0.04 is > 3.5 sigma
    assert abs(sum(wrong) / len(wrong) - rate) < 0.04
    if rate:  # both kinds of error happen: a false Key Information, and a right one with a false option fact
        world = synth.load_world(out)
        true_keys = {synth.explain(world, q, style=s).knowledge for q in qs for s in range(synth.STYLES)}
        bad = [r for q, rs in zip(qs, parsed, strict=True) for r in rs if r.answer != q.answer]
        false_key = sum(r.knowledge not in true_keys for r in bad) / len(bad)
        assert 0.35 < false_key < 0.65


def test_filters_drop_wrong_rationales_and_a_wrong_majority_relabels(data):
    out, _, _ = data
    two = out.parent / "two"
    synth.write(SynthConfig(train=200, valid=4, test=4, options=2, categories=2, entities=8, properties=8), two)
    splits = load_benchmark("custom", str(two))
    system = prompt.system_message(load_fewshot("custom", str(two)), 2, seed=0)
    qs = splits.train[:150]
    parsed = _parsed(_teacher(two, error_rate=0.6), qs, system, n=5)
    verdicts = [filters.judge(q.answer, rs, augment=4, threshold=10, rng=random.Random(0))
                for q, rs in zip(qs, parsed, strict=True)]
    relabelled = sum(v.relabelled for v in verdicts) / len(verdicts)
    assert 0.45 < relabelled < 0.9  # P(>= 3 of 5 wrong) = 0.68 at a 0.6 error rate
    for v in verdicts:
        assert all(r.answer == v.label for r in v.kept)


def test_a_question_scope_error_is_a_belief_every_sample_and_round_shares(data):
    """error_scope question: a question errs or not as a whole, alike in every sample and retry round (another
    GenParams.seed), so the majority relabels it to the one wrong answer all its samples give."""
    out, splits, system = data
    qs = splits.train[:250]
    teacher = _teacher(out, error_rate=0.25, error_scope="question")
    first, retry = (_parsed(teacher, qs, system, n=4, seed=s) for s in (0, 7))
    erring = []
    for q, a, b in zip(qs, first, retry, strict=True):
        answers = {r.answer for r in a + b}
        assert len(answers) == 1  # one belief per question: its samples never disagree
        erring.append(answers != {q.answer})
        verdict = filters.judge(q.answer, a, augment=4, threshold=10, rng=random.Random(0))
        assert verdict.relabelled == erring[-1] and verdict.label == a[0].answer
    # 250 questions: the binomial std is 0.027, so 0.09 is > 3 sigma
    assert abs(sum(erring) / len(erring) - 0.25) < 0.09
    # the default (sample scope) is a different teacher: its samples of one question disagree somewhere
    noisy = _parsed(_teacher(out, error_rate=0.25), qs, system, n=4)
    assert any(len({r.answer for r in rs}) > 1 for rs in noisy)


def test_deterministic_and_order_free(data):
    out, splits, system = data
    qs = splits.train[:10]
    a = _parsed(_teacher(out, error_rate=0.3), qs, system, seed=5)
    b = _parsed(_teacher(out, error_rate=0.3), qs[::-1], system, seed=5)[::-1]
    c = _parsed(_teacher(out, error_rate=0.3), qs, system, seed=6)
    assert a == b and a != c


def test_oracle_student_scores_every_chain_mode_perfectly(data):
    out, splits, _ = data
    oracle = make_sampler(SamplerConfig(backend="rules", model=str(out)))
    for mode in ("summarize", "recall_summarize", "analyze_summarize", "recall_analyze_summarize"):
        assert accuracy(run_chain(oracle, splits.test, MODES[mode]))["accuracy"] == 1.0


def test_errors_name_what_is_wrong(data, tmp_path):
    out, splits, system = data
    with pytest.raises(ConfigError, match="teacher.model: the rules backend needs a synth world"):
        RulesSampler.check(TeacherConfig(backend="rules"), "teacher")  # the driver checks before any work
    with pytest.raises(ConfigError, match="the rules backend needs a synth world"):
        make_sampler(TeacherConfig(backend="rules"))
    with pytest.raises(DataError, match="world file not found"):
        make_sampler(TeacherConfig(backend="rules", model=str(tmp_path)))
    csqa = load_benchmark("csqa").train[0]
    with pytest.raises(DataError, match="not a question about this world"):
        _teacher(out).generate([prompt.messages(csqa, system)], GenParams())
    with pytest.raises(DataError, match="not a teacher prompt nor a stage input"):
        _teacher(out).generate(["hello"], GenParams())


def test_a_link_world_teacher_errs_consistently_and_its_oracle_is_perfect(tmp_path):
    """synth.key link: a wrong rationale's general fact names the option it wrongly calls correct (the teacher's
    errors stay coherent), and the oracle still answers every chain mode perfectly."""
    synth.write(SynthConfig(train=120, valid=10, test=30, options=3, key="link"), tmp_path)
    splits = load_benchmark("custom", str(tmp_path))
    system = prompt.system_message(load_fewshot("custom", str(tmp_path)), 3, seed=0)
    world = synth.load_world(tmp_path)
    qs = splits.train[:100]
    parsed = _parsed(_teacher(tmp_path, error_rate=0.5), qs, system, n=4)
    wrong = 0
    for q, rs in zip(qs, parsed, strict=True):
        for r in rs:
            assert isinstance(r, filters.Rationale), r
            said = dict(q.options)[r.answer]
            word = said if said in world.entities else world.by_phrase[said].word
            assert word in r.knowledge, (r.answer, r.knowledge)
            wrong += r.answer != q.answer
    assert 0.35 < wrong / 400 < 0.65
    oracle = make_sampler(SamplerConfig(backend="rules", model=str(tmp_path)))
    for mode in MODES.values():
        assert accuracy(run_chain(oracle, splits.test, mode))["accuracy"] == 1.0
