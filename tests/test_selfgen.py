"""Self-generation's sampling plan (pure, no Ray): as the authors' generate.py, the recall is sampled
`reflect.samples` times at `reflect.temperature` with the analyses and the summary greedy; the analyze pass
samples the analyses for a fixed recall; a temperature decay gives one pass per sample; the sampling is seeded
per block, so a rerun draws the same chains."""

from __future__ import annotations

import json
import random

import pytest

from tinythinker_ray.config import SynthConfig, TeacherConfig, build_config
from tinythinker_ray.core.modes import FULL, MODES
from tinythinker_ray.data.loaders import load_benchmark
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.reflect.iterate import reflect, reflected_stages
from tinythinker_ray.reflect.pairs import recall_pairs_for
from tinythinker_ray.reflect.selfgen import _chains, _passes, recall_task
from tinythinker_ray.sampling.pool import make_sampler
from tinythinker_ray.world import synth


class Recording:
    """Passes every call on to the real sampler and keeps (number of prompts, params) of each."""

    def __init__(self, sampler):
        self.sampler, self.calls = sampler, []

    def generate(self, prompts, params, regexes=None):
        self.calls.append((len(prompts), params))
        return self.sampler.generate(prompts, params, regexes)


def _world(tmp_path):
    synth.write(SynthConfig(train=30, valid=2, test=2, options=3), tmp_path)
    questions = load_benchmark("custom", str(tmp_path)).train[:4]
    return questions, Recording(make_sampler(TeacherConfig(backend="rules", model=str(tmp_path / "world.json"))))


def test_recall_pass_samples_the_recall_only(tmp_path):
    questions, sampler = _world(tmp_path)
    chains = _chains(sampler, questions, _passes(10, 0.7, 0.0), max_tokens=200, stage="recall",
                     mode=MODES[FULL])
    (recall_n, recall), (analyze_n, analyze), (_, summary) = sampler.calls
    assert (recall_n, recall.n, recall.temperature, recall.max_tokens) == (4, 10, 0.7, 200)
    assert (analyze_n, analyze.n, analyze.temperature) == (4 * 10 * 3, 1, 0.0)  # every recall x option, greedy
    assert summary.temperature == 0.0 and [len(c) for c in chains] == [10] * 4


def test_analyze_pass_samples_the_analyses_of_a_fixed_recall(tmp_path):
    questions, sampler = _world(tmp_path)
    recalls = [f"recall {i}." for i in range(4)]
    chains = _chains(sampler, questions, _passes(10, 0.7, 0.0), 200, "analyze", MODES[FULL], recalls=recalls)
    (analyze_n, analyze), (summary_n, summary) = sampler.calls  # no recall generation
    assert (analyze_n, analyze.n, analyze.temperature) == (4 * 3, 10, 0.7)
    assert summary_n == 40 and summary.temperature == 0.0
    assert all(c["recall"] == r for cs, r in zip(chains, recalls, strict=True) for c in cs)


def test_a_recall_summarize_student_self_generates_recalls_and_summaries_only(tmp_path):
    """Reflection goes on in the student's own phase-1 mode: no analyses asked of a student that never learned
    them, and its recall pairs still come out of those chains."""
    questions, sampler = _world(tmp_path)
    chains = _chains(sampler, questions, _passes(5, 0.7, 0.0), 200, "recall", MODES["recall_summarize"])
    (recall_n, recall), (summary_n, summary) = sampler.calls  # recall, then summarize: no analyze call
    assert (recall_n, recall.n, summary_n) == (4, 5, 20)
    assert all(c["analyses"] == [] and c["prediction"] == q.answer for q, cs in zip(questions, chains, strict=True)
               for c in cs)  # the oracle's chains are right
    wrong = [dict(c, recall="Nothing is known.", prediction="Z") for c in chains[0][:2]]
    pairs = recall_pairs_for(questions[0], chains[0] + wrong, [], random.Random(0))
    assert pairs and all(p["rejected"] == "Nothing is known." for p in pairs)


@pytest.mark.parametrize("sft_mode, reflect_mode, stages", [
    (FULL, "recall_analyze", ("recall", "analyze")),
    ("recall_summarize", "recall_analyze", ("recall",)),
    ("recall_summarize", "analyze", None),
    ("analyze_summarize", "recall_analyze", ()),  # no recall: no phase 2 (`run` skips it)
    ("summarize", "recall", ()),
    (FULL, "recall_analyze_summarize", ("recall", "analyze", "summarize")),  # summary pairs: our addition
    ("recall_summarize", "recall_analyze_summarize", ("recall", "summarize")),
    ("recall_summarize", "summarize", ("summarize",)),
])
def test_reflected_stages_are_those_the_phase_1_mode_has(sft_mode, reflect_mode, stages):
    cfg = build_config({"sft": {"mode": sft_mode}, "reflect": {"mode": reflect_mode}})
    if stages is not None:
        assert reflected_stages(cfg) == stages
    else:
        with pytest.raises(ConfigError, match="reflect.mode"):
            reflected_stages(cfg)
    if not stages:  # `tinythinker reflect` refuses in one line, before it starts Ray or loads a model
        with pytest.raises(ConfigError, match="reflect.mode|has no recall stage"):
            reflect(cfg, model="no-such-model")


def test_temperature_decay_is_one_pass_per_sample_at_a_falling_temperature():
    assert _passes(3, 0.7, 0.0) == [(3, 0.7)]  # the authors' scripts run with decay 0
    assert [(n, round(t, 6)) for n, t in _passes(3, 0.7, 0.3)] == [(1, 0.7), (1, 0.4), (1, 0.1)]
    assert _passes(4, 0.7, 0.5)[-1] == (1, 0.0)  # never below greedy


def test_each_block_samples_from_a_seed_of_the_round_and_its_first_question(tmp_path):
    questions, sampler = _world(tmp_path)
    rows = [{"key": f"k{i}", "question": json.dumps(q.to_dict())} for i, q in enumerate(questions)]

    def seeds(rows, seed):
        sampler.calls.clear()
        recall_task(sampler, rows, passes=_passes(3, 0.7, 0.1), max_tokens=50, mode=FULL, seed=seed)
        return [p.seed for _, p in sampler.calls if p.temperature > 0]

    first = seeds(rows, 7)
    assert len(first) == 3 and first[1:] == [first[0] + 1, first[0] + 2]  # one seed per pass
    assert all(p.seed is None for _, p in sampler.calls if p.temperature == 0)  # greedy stages take none
    assert seeds(rows, 7) == first  # a rerun of the block draws the same samples
    assert seeds(rows, 8)[0] != first[0] and seeds(rows[1:], 7)[0] != first[0]  # another round, another block
    assert seeds(rows, None) == [None] * 3  # unseeded: the process's random state


def test_a_seeded_hf_sampler_draws_the_same_samples_again_and_others_with_another_seed(tiny_llama):
    from tinythinker_ray.sampling.base import GenParams
    from tinythinker_ray.sampling.hf import HFSampler

    engine = HFSampler(tiny_llama)
    prompts = ["Question: what is true of a vell?", "Question: which can glim?"]

    def draw(seed):
        return [[c.text for c in cs] for cs in engine.generate(prompts, GenParams(n=4, temperature=1.5,
                                                                                  max_tokens=12, seed=seed))]

    assert draw(3) == draw(3) and draw(3) != draw(4)
