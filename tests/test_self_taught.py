"""The learning check's STaR-style diagnostic (world/self_taught.py): a source work folder's label-reaching chains
teach phase 1 the questions the teacher did not cover, in the teacher's own row format."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tinythinker_ray.config import SynthConfig
from tinythinker_ray.core.modes import FULL
from tinythinker_ray.data.loaders import load_benchmark
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.rundir import RunDir, TeachDir
from tinythinker_ray.storage import read_jsonl, write_jsonl
from tinythinker_ray.teacher.filters import Rationale
from tinythinker_ray.teacher.stages import STAGES, question_rows
from tinythinker_ray.world import synth
from tinythinker_ray.world.check import (
    SETTINGS_FILE,
    Check,
    Settings,
    self_taught,
    self_taught_source,
    synth_config,
    world_truth,
)
from tinythinker_ray.world.self_taught import add_self_taught, chosen_chains, same_world, source_generations


def chain(recall: str, analyses, prediction: str) -> dict:
    return {"recall": recall, "analyses": [list(a) for a in analyses], "summary": "", "prediction": prediction}


@pytest.fixture
def world_questions(tmp_path):
    data = tmp_path / "data"
    synth.write(SynthConfig(train=30, valid=2, test=6, options=3), data)
    return data, synth.load_world(data), load_benchmark("custom", str(data)).train


def test_the_first_label_reaching_chain_of_each_untaught_question_becomes_its_rationale(world_questions):
    _, world, (taught, q, none_right, *_) = world_questions
    ex, other = synth.explain(world, q, style=2), synth.explain(world, none_right)
    wrong = next(lab for lab, _ in q.options if lab != q.answer)
    missed = next(lab for lab, _ in none_right.options if lab != none_right.answer)
    generations = [
        {"question": taught.to_dict(), "chains": [chain(ex.knowledge, ex.reasons, taught.answer)]},  # has a teacher row
        {"question": q.to_dict(), "chains": [chain(ex.knowledge, ex.reasons, wrong),  # did not reach the label
                                             chain(other.knowledge, ex.reasons, q.answer),  # the first that did
                                             chain(ex.knowledge, ex.reasons, q.answer)]},
        {"question": none_right.to_dict(), "chains": [chain(other.knowledge, other.reasons, missed)]}]
    picked = chosen_chains(generations, skip={taught.id})
    assert picked == [(q, Rationale(knowledge=other.knowledge, answer=q.answer, explanations=ex.reasons))]
    # the world's truth as the filter: the lucky chain (another question's recall) no longer counts
    picked = chosen_chains(generations, skip={taught.id}, truth=lambda question: world_truth(world, question))
    assert picked == [(q, Rationale(knowledge=ex.knowledge, answer=q.answer, explanations=ex.reasons))]


def test_added_chains_are_the_teachers_rows_for_those_questions_and_a_rerun_adds_nothing(world_questions, tmp_path):
    _, world, (taught, q, *_) = world_questions
    teach = TeachDir(tmp_path / "teach")
    teacher = synth.explain(world, taught)
    for stage, rows in question_rows(taught, taught.answer, [Rationale(teacher.knowledge, taught.answer,
                                                                       teacher.reasons)]).items():
        write_jsonl(teach.stage(stage), rows)
    write_jsonl(teach.stage("recall_single"), list(read_jsonl(teach.stage("recall"))))
    true, lucky = synth.explain(world, q), synth.explain(world, taught)  # lucky: another question's recall
    gens = tmp_path / "generations.jsonl"
    write_jsonl(gens, [{"question": q.to_dict(), "chains": [chain(lucky.knowledge, true.reasons, q.answer)]},
                       {"question": taught.to_dict(), "chains": [chain(lucky.knowledge, true.reasons, taught.answer)]}])
    before = {s: list(read_jsonl(teach.stage(s))) for s in STAGES}

    added = add_self_taught(gens, teach, truth=lambda question: world_truth(world, question))
    assert added == {"self_taught": 1, "self_taught_recall_true": 0.0, "self_taught_analyses_true": 1.0}
    expected = question_rows(q, q.answer, [Rationale(lucky.knowledge, q.answer, true.reasons)])
    expected["recall_single"] = expected["recall"]
    for s in STAGES:
        assert list(read_jsonl(teach.stage(s))) == before[s] + expected[s], s
    assert add_self_taught(gens, teach, truth=lambda question: world_truth(world, question))["self_taught"] == 0
    assert add_self_taught(gens, TeachDir(tmp_path / "other"), truth=lambda question: world_truth(world, question),
                           only_true=True)["self_taught"] == 0  # its one chain's recall is false
    assert len(list(read_jsonl(teach.stage("recall")))) == 2


def test_a_source_with_another_phase1_another_world_or_no_rounds_is_refused(tmp_path):
    source = tmp_path / "source"
    settings = Settings(train=30, valid=2, test=6, taught=10, self_taught_from=str(source))
    with pytest.raises(ConfigError, match="not a learning-check work folder"):
        self_taught_source(settings)
    source.mkdir()
    (source / SETTINGS_FILE).write_text(json.dumps(dataclasses.asdict(Settings(train=30, valid=2, test=6, taught=20))))
    with pytest.raises(ConfigError, match="taught: 20 -> 10"):
        self_taught_source(settings)
    # reflection's settings may differ: the chains are sampled by the phase-1 model, before any round
    recorded = dataclasses.asdict(Settings(train=30, valid=2, test=6, taught=10, rounds=5, reflect_alpha=2))
    (source / SETTINGS_FILE).write_text(json.dumps(recorded))
    assert self_taught_source(settings) == source.resolve()
    with pytest.raises(ConfigError, match="no first reflect round"):
        source_generations(source, 0, FULL)
    RunDir(source / "seed0" / "llama" / FULL).reflect(1).generations.parent.mkdir(parents=True)
    RunDir(source / "seed0" / "llama" / FULL).reflect(1).generations.write_text("")
    assert source_generations(source, 0, FULL).exists()

    a, b = Check(source, settings), Check(tmp_path / "work", settings)
    synth.write(SynthConfig(train=30, valid=2, test=6, seed=0), a.data_dir(0))
    synth.write(SynthConfig(train=30, valid=2, test=6, seed=0), b.data_dir(0))
    same_world(a.data_dir(0), b.data_dir(0))
    synth.write(SynthConfig(train=30, valid=2, test=6, seed=1), b.data_dir(0))
    with pytest.raises(ConfigError, match="must come from the same world"):
        same_world(a.data_dir(0), b.data_dir(0))


def test_a_seeds_teacher_output_gains_the_sources_chains_through_the_checks_own_unit(tmp_path):
    """check.self_taught, as prepare_seed calls it: the source's settings and world are checked, its round-1
    chains of the untaught questions join this work folder's teacher rows, and the filter setting is honoured."""
    settings = Settings(train=30, valid=2, test=6, taught=1)
    source = Check(tmp_path / "source", settings)
    source.work.mkdir()
    (source.work / SETTINGS_FILE).write_text(json.dumps(dataclasses.asdict(settings)))
    synth.write(synth_config(settings, 0), source.data_dir(0))
    world = synth.load_world(source.data_dir(0))
    taught, *untaught = load_benchmark("custom", str(source.data_dir(0))).train[:3]
    gens = RunDir(source.seed_dir(0) / "llama" / FULL).reflect(1).generations
    lucky = synth.explain(world, taught)  # right answer, another question's recall
    write_jsonl(gens, [{"question": q.to_dict(), "chains": [chain(lucky.knowledge, synth.explain(world, q).reasons,
                                                                  q.answer)]} for q in untaught])

    for only, expected in (("label", 2), ("truth", 0)):
        here = Check(tmp_path / only, dataclasses.replace(settings, self_taught_from=str(source.work),
                                                         self_taught_filter=only))
        synth.write(synth_config(settings, 0), here.data_dir(0))
        teach = RunDir(here.teach_run(0)).teach
        teacher = synth.explain(world, taught)
        for stage, rows in question_rows(taught, taught.answer, [Rationale(teacher.knowledge, taught.answer,
                                                                           teacher.reasons)]).items():
            write_jsonl(teach.stage(stage), rows)
        added = self_taught(here, 0)
        assert added["self_taught"] == expected
        assert len(list(read_jsonl(teach.stage("recall")))) == 1 + expected
