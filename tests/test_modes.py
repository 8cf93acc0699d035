"""The phase-1 mode table (core/modes.py): every mode trains exactly the inputs its chain builds at inference,
and a new mode is one line in the table (pure: the rule oracle answers the chain, no Ray)."""

from __future__ import annotations

import pytest

from tinythinker_ray.config import SynthConfig, TeacherConfig, load_config
from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.modes import MODES, Mode, get_mode, mode_rows
from tinythinker_ray.core.records import Question
from tinythinker_ray.data.loaders import load_benchmark, load_fewshot
from tinythinker_ray.errors import ConfigError, DataError
from tinythinker_ray.eval.chain import run_chain
from tinythinker_ray.sampling.base import GenParams
from tinythinker_ray.sampling.pool import make_sampler
from tinythinker_ray.storage import write_jsonl
from tinythinker_ray.teacher import filters, prompt
from tinythinker_ray.teacher.stages import question_rows
from tinythinker_ray.train.batches import encode_example, tokenizer_for
from tinythinker_ray.train.schedule import stage_plan
from tinythinker_ray.train.sft import read_stage
from tinythinker_ray.world import synth

Q = Question("q1", "Which of these can glim?", (("A", "vell"), ("B", "tarn")), "A")
RECALL = "Only zorbs can glim."
ANALYSES = [("A", "a vell is a kind of zorb, so it can glim."), ("B", "a tarn is a kind of plek, so it cannot glim.")]
BLIND = Mode("blind_analyze", recall=True, analyze=True, analyze_sees_recall=False)  # the toy fifth mode


def _teacher_rows() -> dict[str, list[dict]]:
    """Stage rows as the teacher writes them: every input holds all earlier stages."""
    return {
        "recall": [{"input": fmt.recall_input(Q), "target": RECALL}],
        "analyze": [{"input": fmt.analyze_input(Q, lab, RECALL), "target": why} for lab, why in ANALYSES],
        "summarize": [{"input": fmt.summarize_input(Q, RECALL, ANALYSES), "target": fmt.summarize_target("A")}] * 2,
    }


@pytest.mark.parametrize("mode, summarize_input, analyze_recall", [
    ("summarize", fmt.summarize_input(Q, None, None), None),
    ("recall_summarize", fmt.summarize_input(Q, RECALL, None), None),
    ("analyze_summarize", fmt.summarize_input(Q, None, ANALYSES), None),
    ("recall_analyze_summarize", fmt.summarize_input(Q, RECALL, ANALYSES), RECALL),
])
def test_mode_rows_cut_the_stages_the_mode_does_not_run_out_of_the_inputs(mode, summarize_input, analyze_recall):
    rows, m = _teacher_rows(), MODES[mode]
    assert [r["input"] for r in mode_rows(rows["summarize"], m)] == [summarize_input]  # the duplicate is kept once
    if m.analyze:
        analyze = mode_rows(rows["analyze"], m)
        assert [r["input"] for r in analyze] == [fmt.analyze_input(Q, lab, analyze_recall) for lab, _ in ANALYSES]
        assert [r["target"] for r in analyze] == [why for _, why in ANALYSES]
    assert mode_rows(rows["recall"], m) == rows["recall"]


def test_every_mode_shows_only_the_stages_it_trains():
    assert {name: m.stages for name, m in MODES.items()} == {
        "summarize": ("summarize",), "recall_summarize": ("recall", "summarize"),
        "analyze_summarize": ("analyze", "summarize"),
        "recall_analyze_summarize": ("recall", "analyze", "summarize")}
    with pytest.raises(KeyError, match="recall_analyze_summarize"):
        get_mode("recall_only")
    with pytest.raises(ConfigError, match="'sft.mode': unknown mode; modes: summarize, recall_summarize"):
        load_config(None, ["sft.mode=recall_only"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth.write(SynthConfig(train=30, valid=2, test=2, options=3), out)
    questions = load_benchmark("custom", str(out)).train
    oracle = make_sampler(TeacherConfig(backend="rules", model=str(out / "world.json")))
    system = prompt.system_message(load_fewshot("custom", str(out)), 2, seed=0)
    replies = oracle.generate([prompt.messages(q, system) for q in questions], GenParams(n=1))
    rows: dict[str, list[dict]] = {"recall": [], "analyze": [], "summarize": []}
    for q, [c] in zip(questions, replies, strict=True):
        rationale = filters.parse_reply(c.text, q.labels, c.finish_reason)
        for stage, rs in question_rows(q, q.answer, [rationale]).items():
            rows[stage] += rs
    return questions, oracle, rows


class Recording:
    """A Sampler that passes every call on to the real one and keeps the prompts it was asked."""

    def __init__(self, sampler):
        self.sampler, self.prompts = sampler, []

    def generate(self, prompts, params, regexes=None):
        self.prompts += prompts
        return self.sampler.generate(prompts, params, regexes)


def _trained_and_asked(world, mode: Mode, tmp_path) -> tuple[set, set]:
    questions, oracle, rows = world
    trained = set()
    for stage in mode.stages:
        write_jsonl(tmp_path / f"{stage}.jsonl", rows[stage])
        trained |= {r["input"] for r in read_stage(tmp_path / f"{stage}.jsonl", mode)}
    recording = Recording(oracle)
    run_chain(recording, questions, mode)
    return trained, set(recording.prompts)


@pytest.mark.parametrize("name", list(MODES))
def test_sft_trains_exactly_the_inputs_its_chain_builds_at_inference(world, name, tmp_path):
    """The teacher's rationales are the oracle's chains, so a mode's chain over the training questions asks
    exactly the prompts its training rows hold: no more (a stage trained but never run), no fewer."""
    trained, asked = _trained_and_asked(world, MODES[name], tmp_path)
    assert trained == asked


@pytest.mark.parametrize("family", ["tiny_t5", "tiny_llama"])
def test_both_families_see_the_same_prompt_tokens_in_training_and_at_inference(world, family, request):
    """The prompt part of a training row is tokenized exactly as the HF sampler tokenizes the prompt."""
    model = request.getfixturevalue(family)
    tok, seq2seq = tokenizer_for(model)
    for row in world[2]["summarize"][:4]:
        ids, labels, _ = encode_example(tok, row["input"], row["target"], seq2seq=seq2seq, max_length=None)
        prompt_ids = ids if seq2seq else [t for t, lab in zip(ids, labels, strict=True) if lab < 0]
        assert prompt_ids == tok(row["input"])["input_ids"]


def test_a_new_mode_is_one_line_in_the_table(world, tmp_path, monkeypatch):
    monkeypatch.setitem(MODES, BLIND.name, BLIND)
    cfg = load_config(None, [f"sft.mode={BLIND.name}"])  # config validation reads the table
    mode = get_mode(cfg.sft.mode)
    assert stage_plan(mode, 2, 3) == [("recall", 2), ("analyze", 6), ("summarize", 2)]
    trained, asked = _trained_and_asked(world, mode, tmp_path)
    assert trained == asked
    analyze_prompts = [p for p in asked if p.endswith(",")]
    assert analyze_prompts and not any(fmt.RECALL in p for p in analyze_prompts)  # analysis does not see recall
    assert all(fmt.RECALL in p for p in asked if p.endswith(fmt.SUMMARIZE))  # the summary does


def test_a_stage_file_with_an_input_that_is_no_stage_input_names_file_and_line(tmp_path):
    path = tmp_path / "summarize.jsonl"
    write_jsonl(path, [_teacher_rows()["summarize"][0], {"input": "What?", "target": "So the answer is option A."}])
    with pytest.raises(DataError, match=r"summarize\.jsonl.*2.*input"):
        read_stage(path, MODES["summarize"])
