"""`reflect` for real: 2 rounds of self-generation (vLLM-CPU for the tiny Llama, HF for the tiny T5, in Ray
actor pools), pairs, reference log-probs in Ray Data, and RPO on 2 Ray Train workers with DeepSpeed.

The phase-1 student is built here in a few seconds: a plain torch loop on the three-stage rows of 9 small
questions, where every question was taught with a right and a wrong rationale (and a flipped analysis), so its
sampled chains disagree and pairs come from both sides or from the teacher's top-up.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tinythinker_ray.config import load_config
from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.records import Question
from tinythinker_ray.reflect.iterate import main, reflect, training_questions
from tinythinker_ray.reflect.selfgen import generate_recalls
from tinythinker_ray.rundir import RunDir
from tinythinker_ray.storage import read_jsonl, write_jsonl
from tinythinker_ray.teacher.filters import Rationale
from tinythinker_ray.teacher.stages import write_stages

pytestmark = pytest.mark.slow

KINDS = {"fruit": ["apple", "banana", "cherry", "lemon"], "animal": ["dog", "cat", "horse", "sheep"],
         "tool": ["hammer", "saw", "drill", "wrench"]}


def make_questions(n: int) -> list[tuple[Question, str]]:
    cats = list(KINDS)
    out = []
    for i in range(n):
        cat = cats[i % 3]
        others = [c for c in cats if c != cat]
        opts = [KINDS[cat][i // 3 % 4], KINDS[others[0]][i % 4], KINDS[others[1]][(i + 1) % 4]]
        gold = opts[0]
        random.Random(i).shuffle(opts)
        options = tuple(zip("ABC", opts, strict=True))
        q = Question(f"q{i}", f"Which one is a {cat}?", options, "ABC"[opts.index(gold)])
        out.append((q, cat))
    return out


def knowledge(item: str, cat: str) -> str:
    return f"A {item} is a {cat}."


def analyses(q: Question, cat: str, item: str) -> list[tuple[str, str]]:
    return [(label, f"{t} is the {cat}." if t == item else f"{t} is not a {cat}.") for label, t in q.options]


def student_rows(q: Question, cat: str) -> list[tuple[str, str]]:
    """Phase-1 rows: the right and a wrong rationale, and the right recall with flipped analyses."""
    texts = dict(q.options)
    wrong = next(label for label, _ in q.options if label != q.answer)
    rows = []
    for label in (q.answer, wrong):
        k, an = knowledge(texts[label], cat), analyses(q, cat, texts[label])
        rows += [(fmt.recall_input(q), k), (fmt.summarize_input(q, k, an), fmt.summarize_target(label))]
        rows += [(fmt.analyze_input(q, o, k), t) for o, t in an]
    k, flipped = knowledge(texts[q.answer], cat), analyses(q, cat, texts[wrong])
    rows += [(fmt.analyze_input(q, o, k), t) for o, t in flipped]
    return rows + [(fmt.summarize_input(q, k, flipped), fmt.summarize_target(wrong))]


def phase1(model_path: str, rows: list[tuple[str, str]], out: Path, steps: int = 300) -> str:
    """A quick in-process SFT (the real encode/collate/loss of phase 1), saved as run_dir/sft/best."""
    import torch

    from tinythinker_ray.models import load_student
    from tinythinker_ray.train.batches import collate_sft, encode_example, tokenizer_for
    from tinythinker_ray.train.losses import sft_loss

    torch.set_num_threads(1)  # OpenMP threads spin badly on 2 shared cores
    torch.manual_seed(0)
    model, tok = load_student(model_path)
    enc_tok, seq2seq = tokenizer_for(model_path)
    encoded = [encode_example(enc_tok, p, t, seq2seq=seq2seq, max_length=96)[:2] for p, t in rows]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        batch = rng.sample(encoded, 16)
        tensors = collate_sft({"input_ids": [i for i, _ in batch], "labels": [lb for _, lb in batch]},
                              tok.pad_token_id)
        loss, _ = sft_loss(model, tensors)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def build_run(run_dir: Path, model_path: str, steps: int = 300) -> str:
    """teach/ (questions, the teacher's right rationales) and sft/best: 9 training, 3 validation questions."""
    qs = make_questions(12)
    train, valid = qs[:9], qs[9:]
    write_jsonl(run_dir / "teach" / "questions" / "train.jsonl", [q.to_dict() for q, _ in train])
    write_jsonl(run_dir / "teach" / "questions" / "valid.jsonl", [q.to_dict() for q, _ in valid])
    rationale = {q.id: Rationale(knowledge(dict(q.options)[q.answer], c), q.answer,
                                 tuple(analyses(q, c, dict(q.options)[q.answer]))) for q, c in train}
    write_stages([[(q, q.answer, [rationale[q.id]])] for q, _ in train], RunDir(run_dir).teach)
    rows = [r for q, c in train for r in student_rows(q, c)]
    return phase1(model_path, rows, run_dir / "sft" / "best", steps)


def config(run_dir: Path, *extra: str):
    return load_config(None, [
        f"run_dir={run_dir}", "student.max_new_tokens=16", "student.max_length=96", "reflect.iterations=2",
        "reflect.samples=4", "reflect.analyze_samples=4", "reflect.batch_size=1", "reflect.cycles=2",
        "reflect.lr=1e-3", "train.num_workers=2", "train.log_every=1", "train.eval_limit=3",
        "sampler.kv_cache_gib=0.25", "sampler.max_model_len=512", "eval.batch_size=16", *extra])


def check_rounds(run_dir: Path, records: list[dict], sft_best: str, stages: tuple[str, ...]) -> None:
    assert [r["round"] for r in records] == [1, 2]
    assert records[0]["reference"] == str(Path(sft_best).resolve())
    assert records[1]["reference"] == records[0]["best"]  # round 2 starts from and refers to round 1's best
    manifest = RunDir(run_dir).manifest
    for r in records:
        it = run_dir / "reflect" / f"iter_{r['round']}"
        assert json.loads((it / "record.json").read_text()) == r
        assert manifest.get(f"reflect/iter_{r['round']}")["record"] == r
        assert (Path(r["best"]) / "config.json").exists() and Path(r["best"]) == it / "best"
        gens = list(read_jsonl(it / "generations.jsonl"))
        assert sorted(g["qid"] for g in gens) == [f"q{i}" for i in range(9)]
        assert all(len(g["chains"]) == 4 for g in gens)
        # pairs were made for every trained stage and written as counted
        for stage in ("recall", "analyze", "summarize"):
            assert (r.get(f"{stage}_pairs", 0) > 0) == (stage in stages)
            if stage in stages:
                assert len(list(read_jsonl(it / f"{stage}_pairs.jsonl"))) == r[f"{stage}_pairs"]
        # training moved the policy toward the chosen side: its log-prob margin on the pairs grew
        assert sorted(r["logp_margin"]) == sorted(stages)
        for stage, m in r["logp_margin"].items():
            assert m["best"] > m["reference"], (stage, m)
        # margin_start/end are single logging windows (a few pairs each): recorded, not compared -- the
        # whole-set margin above is the measure of whether the round moved the policy
        assert isinstance(r["margin_start"], float) and isinstance(r["margin_end"], float)
        assert 0 <= r["val_accuracy"] <= 1 and r["steps"] > 0 and r["seconds"] > 0


def test_reflect_two_rounds_causal_student_on_vllm(tmp_path, tiny_llama, ray_local, capsys):
    """Recall mode: one vLLM engine start per round (the analyze stage runs in the T5 test, same code)."""
    sft_best = build_run(tmp_path, tiny_llama, steps=150)
    cfg = config(tmp_path, "reflect.mode=recall")
    records = reflect(cfg)
    check_rounds(tmp_path, records, sft_best, stages=("recall",))
    assert not (tmp_path / "reflect" / "iter_1" / "analyze_generations.jsonl").exists()
    assert "[reflect 2]" in capsys.readouterr().out

    # a rerun finds both rounds done and does no work, even when another writer of the manifest dropped them
    (tmp_path / "manifest.json").unlink()
    again = reflect(cfg)
    assert again == records and capsys.readouterr().out.count("done already") == 2
    assert RunDir(tmp_path).manifest.get("reflect/iter_2")["record"] == records[1]


def test_reflect_two_rounds_t5_on_hf_resume_and_clean_stop(tmp_path, tiny_t5, ray_local, capsys):
    """All three stages paired (the summary pairs are our addition; the authors' default pairs two)."""
    sft_best = build_run(tmp_path, tiny_t5)
    cfg = config(tmp_path, "reflect.mode=recall_analyze_summarize")
    records = reflect(cfg)
    check_rounds(tmp_path, records, sft_best, stages=("recall", "analyze", "summarize"))

    # self-generation resumes: a killed writer left 3 rows and a torn line; only the other 6 are generated
    gens = tmp_path / "reflect" / "iter_1" / "generations.jsonl"
    lines = gens.read_text().splitlines(keepends=True)
    gens.write_text("".join(lines[:3]) + lines[3][:20])
    generate_recalls(cfg, records[0]["reference"], training_questions(cfg), gens)
    rows = list(read_jsonl(gens, tolerate_torn_tail=False))
    assert [json.loads(line) for line in lines[:3]] == rows[:3] and len(rows) == 9

    # a third round that cannot make enough pairs is recorded and ends the phase without an error
    capsys.readouterr()
    assert main(config(tmp_path, "reflect.mode=recall_analyze_summarize", "reflect.iterations=3",
                       "reflect.batch_size=1000"), []) == 0
    out = capsys.readouterr().out
    third = json.loads((tmp_path / "reflect" / "iter_3" / "record.json").read_text())
    assert "too few preference pairs" in third["stopped"] and "stopping" in out and "stopped" in out
    assert "best" not in third and third["reference"] == records[1]["best"]
