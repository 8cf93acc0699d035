"""The Ray Train + DeepSpeed loop: batches (pure), DeepSpeed config, and real 2-worker runs on tiny students.

Slow runs use the session Ray (`ray_local`, 4 logical CPUs on 2 cores): a causal student under ZeRO-2 whose
loss must fall, and ZeRO-3 with resume: N steps, then 2N on the same run name must continue from N.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tinythinker_ray.config import TrainConfig
from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.modes import MODES
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.eval.chain import ChainEval
from tinythinker_ray.rundir import TrainDir
from tinythinker_ray.storage import read_jsonl
from tinythinker_ray.train.batches import (
    _ragged,
    check_truncated,
    collate_sft,
    encode_example,
    encode_rows,
    prepare_stage,
    tokenizer_for,
)
from tinythinker_ray.train.loop import FitSpec, deepspeed_config, fit, lr_scheduler_factory
from tinythinker_ray.train.losses import IGNORE
from tinythinker_ray.train.schedule import schedule, stage_plan, steps_per_epoch
from tinythinker_ray.train.sft import SFT


def overfit_rows(questions, copies: int = 1) -> dict[str, list[dict]]:
    """Stage rows without a teacher: recall names the gold option's text, each analysis says whether its option
    is the gold one, summarize gives the gold letter. `copies` repeats them (like several rationales)."""
    rows: dict[str, list[dict]] = {"recall": [], "analyze": [], "summarize": []}
    for q in questions:
        recall = f"Think about {dict(q.options)[q.answer]}."
        analyses = [(label, f"{text} is {'correct' if label == q.answer else 'incorrect'}.")
                    for label, text in q.options]
        for _ in range(copies):
            rows["recall"].append({"input": fmt.recall_input(q), "target": recall, "label": q.answer, "qid": q.id})
            rows["analyze"] += [{"input": fmt.analyze_input(q, label, recall), "target": text, "label": label,
                                 "qid": q.id} for label, text in analyses]
            rows["summarize"].append({"input": fmt.summarize_input(q, recall, analyses),
                                      "target": fmt.summarize_target(q.answer), "label": q.answer, "qid": q.id})
    return rows


# ----- batches (no Ray) ----------------------------------------------------------------------------------------------

def test_causal_rows_mask_the_prompt_and_end_in_eos(tiny_llama):
    tok, seq2seq = tokenizer_for(tiny_llama)
    assert not seq2seq
    prompt, target = "Q?\n(A) x (B) y\nSummarize:", "So the answer is option B."
    ids, labels, _ = encode_example(tok, prompt, target, seq2seq=False, max_length=200)
    n_prompt = len(tok(prompt)["input_ids"])
    assert ids[:n_prompt] == tok(prompt)["input_ids"]  # exactly what inference feeds the model
    assert labels[:n_prompt] == [IGNORE] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids[n_prompt:-1]) == " " + target


def test_seq2seq_rows_and_truncation_keep_the_stage_cue(tiny_t5):
    tok, seq2seq = tokenizer_for(tiny_t5)
    assert seq2seq
    prompt = "word " * 300 + "\nAnalyze: For option B,"
    ids, labels, _ = encode_example(tok, prompt, "it is wrong.", seq2seq=True, max_length=32)
    assert len(ids) == 32 and tok.decode(ids, skip_special_tokens=True).endswith("Analyze: For option B,")
    assert labels == tok("it is wrong.")["input_ids"] and labels[-1] == tok.eos_token_id
    out = encode_rows({"input": [prompt, "short\nRecall:"], "target": ["a", "b"]}, model_path=tiny_t5, max_length=32)
    assert [len(x) for x in out["input_ids"]] == list(out["length"])
    assert list(out["truncated"]) == [True, False]  # every cut row is flagged, so phase 1 can count it


def test_nothing_is_cut_without_max_length_and_too_many_cut_rows_are_refused(tiny_t5):
    """The authors never truncate in phase 1: with student.max_length unset the longest row stays whole."""
    tok, _ = tokenizer_for(tiny_t5)
    prompt = "word " * 300 + "\nSummarize:"
    ids, labels, cut = encode_example(tok, prompt, "So the answer is option A.", seq2seq=True, max_length=None)
    assert ids == tok(prompt)["input_ids"] and not cut and len(ids) > 300
    check_truncated({"summarize": (1, 100)}, 32, share=0.01)  # 1%: allowed
    with pytest.raises(ConfigError, match=r"'student.max_length': 32 tokens cut 2 of 100 summarize rows"):
        check_truncated({"recall": (0, 10), "summarize": (2, 100)}, 32, share=0.01)


def test_collate_pads_to_the_longest_row_with_a_mask():
    batch = collate_sft({"input_ids": [[5, 6, 7], [8]], "labels": [[-100, 6, 7], [8]]}, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_epoch_windows_shuffle_rows_and_bucket_them_by_length():
    from tinythinker_ray.train.batches import _shuffle_window

    lengths = np.random.default_rng(0).permutation(32)
    window = {"length": lengths, "input_ids": _ragged([[int(n)] * (int(n) + 1) for n in lengths])}
    out = _shuffle_window(window, batch_size=4, bucket=True)
    assert sorted(out["length"].tolist()) == list(range(32))  # every row once
    assert all(len(ids) == n + 1 for ids, n in zip(out["input_ids"], out["length"], strict=True))  # rows intact
    groups = [sorted(out["length"][i:i + 4].tolist()) for i in range(0, 32, 4)]
    assert sorted(groups) == [list(range(k, k + 4)) for k in range(0, 32, 4)]  # each batch: 4 neighbours in length
    plain = _shuffle_window(window, batch_size=4, bucket=False)
    assert sorted(plain["length"].tolist()) == list(range(32))


def test_a_shard_kept_in_memory_gives_every_row_once_per_epoch_in_a_seeded_new_order(ray_local):
    import ray.data

    from tinythinker_ray.train.batches import memory_epoch, memory_shards, read_blocks

    ds = ray.data.from_items([{"input_ids": [i] * (1 + i % 3), "qid": i} for i in range(85)],
                             override_num_blocks=3).materialize()
    shards = [read_blocks(refs) for refs in memory_shards(ds, 2)]
    qids = [sh["qid"].tolist() for sh in shards]
    assert [len(q) for q in qids] == [42, 42] and not set(qids[0]) & set(qids[1])  # equal, disjoint, 1 row left
    assert [read_blocks(refs)["qid"].tolist() for refs in memory_shards(ds, 2)] == qids  # the same cut again
    rows = shards[1]
    epochs = [list(memory_epoch(rows, batch_size=8, bucket=True, collate=lambda b: b, seed=(0, 0, e)))
              for e in (0, 1, 0)]
    for batches in epochs:
        assert [len(b["qid"]) for b in batches] == [8] * 5  # full batches only: 2 rows wait for another epoch
        seen = np.concatenate([b["qid"] for b in batches]).tolist()
        assert len(set(seen)) == 40 and set(seen) <= set(qids[1]) and all(len(ids) == 1 + q % 3 for b in batches
                                            for ids, q in zip(b["input_ids"], b["qid"], strict=True))
    order = [[b["qid"].tolist() for b in batches] for batches in epochs]
    assert order[0] != order[1] and order[0] == order[2]  # a new order every epoch, the same one on a rerun


def test_prepare_stage_shuffles_the_file_order_once_by_seed(ray_local, tiny_llama):
    """A stage file lists a question's rows side by side and an epoch only reshuffles locally, so preparation
    mixes the whole file once (the learning check's students learned far slower without it)."""
    from tinythinker_ray.train.batches import prepare_stage, tokenizer_for

    tok, _ = tokenizer_for(tiny_llama)
    rows = [{"input": f"question {i}", "target": "yes"} for i in range(600)]

    def order(seed):
        ds, batches, _ = prepare_stage(rows, model_path=tiny_llama, max_length=32, batch_size=8, world_size=2,
                                    seed=seed)
        assert batches == 600 // 2 // 8
        return [int(tok.decode(r["input_ids"], skip_special_tokens=True).split()[1]) for r in ds.take_all()]

    a = order(7)
    assert sorted(a) == list(range(600))  # every row once
    assert max(a[:100]) - min(a[:100]) > 400  # the first rows come from all over the file
    assert order(7) == a and order(8) != a  # one order per seed


# ----- DeepSpeed config and learning rate (no Ray) ----------------------------------------------------------------

def test_deepspeed_config_from_train_section():
    tc = TrainConfig(zero_stage=3, offload_optimizer=True, offload_params=True, grad_accum=4, max_grad_norm=0.5)
    ds = deepspeed_config(tc, batch_size=8, lr=1e-4, world_size=2)
    assert ds["train_batch_size"] == 64 and ds["gradient_accumulation_steps"] == 4
    assert ds["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": False},
                                       "offload_param": {"device": "cpu", "pin_memory": False}}
    assert ds["bf16"] == {"enabled": False} and ds["gradient_clipping"] == 0.5
    assert ds["optimizer"]["params"]["torch_adam"] is False  # offloaded: DeepSpeed's CPU Adam
    assert deepspeed_config(TrainConfig(use_gpu=True), batch_size=1, lr=1, world_size=1)["bf16"]["enabled"]
    # one rank has nothing to partition: ZeRO-0 unless offload needs ZeRO
    stage = {(w, off): deepspeed_config(TrainConfig(zero_stage=2, offload_optimizer=off), batch_size=1, lr=1,
                                        world_size=w)["zero_optimization"]["stage"] for w in (1, 2) for off in (0, 1)}
    assert stage == {(1, 0): 0, (1, 1): 2, (2, 0): 2, (2, 1): 2}
    with pytest.raises(ConfigError, match="train.offload_params"):
        deepspeed_config(TrainConfig(zero_stage=2, offload_params=True), batch_size=1, lr=1, world_size=1)


@pytest.mark.parametrize("name, end", [("cosine", 0.0), ("linear", 0.0), ("constant", 1.0)])
def test_lr_schedule_warms_up_then_decays(name, end):
    spec = FitSpec(model_path="-", out=TrainDir(Path("-")), steps=["summarize"] * 20, steps_per_epoch=20, batch_size=1, lr=1.0,
                   train=TrainConfig(grad_accum=2), scheduler=name, warmup=0.2)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = lr_scheduler_factory(spec)(opt)  # 10 optimizer steps, 2 of warmup
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(end)


# ----- real runs ---------------------------------------------------------------------------------------------------

def _job(model_path: str, out_dir: Path, questions, *, zero: int, max_steps: int, lr: float, eval_every=None,
         copies: int = 1, name: str = "loop", memory_epoch_rows: int = 100_000):
    """What a driver does before fit(): tokenized Ray datasets, the schedule, the spec."""
    train = TrainConfig(num_workers=2, zero_stage=zero, log_every=5, checkpoints_to_keep=1,
                        memory_epoch_rows=memory_epoch_rows)
    datasets, sizes = {}, {}
    for stage, rows in overfit_rows(questions, copies).items():
        datasets[stage], sizes[stage], _ = prepare_stage(rows, model_path=model_path,
                                                      max_length=200, batch_size=4, world_size=2)
    plan = stage_plan(MODES["recall_analyze_summarize"], 1, len(questions[0].options))
    spec = FitSpec(model_path=model_path, out=TrainDir(out_dir), steps=schedule(sizes, plan, max_steps=max_steps),
                   steps_per_epoch=steps_per_epoch(sizes, plan), batch_size=4, lr=lr, train=train,
                   scheduler="constant", warmup=0.0, eval_every=eval_every, name=name, phase="test")
    return spec, datasets


def _rows(out_dir: Path, kind: str) -> list[dict]:
    return [r for r in read_jsonl(out_dir / "metrics.jsonl") if r["kind"] == kind]


@pytest.mark.slow
def test_causal_student_two_workers_zero2_loss_falls(ray_local, tiny_llama, csqa_questions, tmp_path):
    questions = csqa_questions[:8]
    # memory_epoch_rows=0: every epoch a Ray Data pass (the path of large stages; the resume test below keeps
    # its small shards in worker memory)
    spec, datasets = _job(tiny_llama, tmp_path / "sft", questions, zero=2, max_steps=60, lr=3e-3,
                          memory_epoch_rows=0)
    evaluate = ChainEval([q.to_dict() for q in questions[:4]], max_new_tokens=12, batch_size=8)
    result = fit(spec, datasets, SFT, evaluate)
    train = _rows(tmp_path / "sft", "train")
    assert [r["step"] for r in train] == list(range(5, 61, 5))
    assert train[-1]["loss"] < train[0]["loss"] * 0.7, (train[0]["loss"], train[-1]["loss"])
    assert {"loss/recall", "loss/analyze", "loss/summarize", "lr", "samples_per_s"} <= set(train[-1])
    assert result.steps == 60 and len(result.history) == 1 and result.history[0]["val_questions"] == 4
    assert result.best_dir and (Path(result.best_dir) / "model.safetensors").exists()
    assert list((tmp_path / "sft" / "tb").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_zero3_resume_continues_from_the_saved_step(ray_local, tiny_llama, csqa_questions, tmp_path):
    questions = csqa_questions[:4]
    out = tmp_path / "phase"
    evaluate = ChainEval([q.to_dict() for q in questions[:2]], max_new_tokens=8, batch_size=8)
    spec, datasets = _job(tiny_llama, out, questions, zero=3, max_steps=10, lr=1e-3, eval_every=5)
    first = fit(spec, datasets, SFT, evaluate)
    assert first.steps == 10 and [h["step"] for h in first.history] == [5, 10]
    best = json.loads((out / "best" / "config.json").read_text())  # a ZeRO-3 export: gathered whole weights
    assert best["architectures"] == ["LlamaForCausalLM"]
    from tinythinker_ray.models import load_student

    model, _ = load_student(str(out / "best"))
    ref, _ = load_student(tiny_llama)
    assert model.model.embed_tokens.weight.shape == ref.model.embed_tokens.weight.shape
    assert not torch.equal(model.model.embed_tokens.weight, ref.model.embed_tokens.weight)  # trained

    spec, datasets = _job(tiny_llama, out, questions, zero=3, max_steps=20, lr=1e-3, eval_every=5)
    second = fit(spec, datasets, SFT, evaluate)
    starts = _rows(out, "start")
    assert [(s["step"], s["resumed"]) for s in starts] == [(0, False), (10, True)]
    steps_after = [r["step"] for r in _rows(out, "train")][2:]  # after the first run's rows at 5 and 10
    assert steps_after == [15, 20]  # continued at 10: no step of the second run repeats the first's
    assert second.steps == 20 and [h["step"] for h in second.history] == [5, 10, 15, 20]
