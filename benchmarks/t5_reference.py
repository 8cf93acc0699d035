"""Is our phase-1 path the reason a student does not learn? The same student, on the same stage rows, trained by a
plain single-process transformers loop (no Ray, no DeepSpeed, HF's own `labels=` loss), against `tinythinker
sft` at equal steps: loss curves and chain accuracy side by side.

    .venv/bin/python benchmarks/t5_reference.py --work runs/learning --family t5 --seed 0 --mode recall_summarize
    .venv/bin/python benchmarks/t5_reference.py ... --lr 1e-3 --dropout 0.1   # the plain loop with other settings

The plain loop takes the learning check's settings (batch, lr, cosine schedule with 10% warmup, interval-1
blocks of each stage in turn, a new shuffle per epoch, gradient clipping 1.0) and the seed's student as built
(its random init and tokenizer), on the world and settings the work folder recorded (its settings.json; the
defaults without one). Ours is the check's unit for that (family, seed, mode), run or reused from the work
folder's cache. Prints a table and writes results/t5_reference-<family>-<seed>-<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def plain_loop(check, family: str, seed: int, mode_name: str, steps: int, lr: float, dropout: float | None,
               log_every: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, get_scheduler

    from tinythinker_ray.core.modes import get_mode
    from tinythinker_ray.data.loaders import load_benchmark
    from tinythinker_ray.eval.chain import accuracy, run_chain
    from tinythinker_ray.rundir import RunDir
    from tinythinker_ray.sampling.base import GenParams
    from tinythinker_ray.sampling.hf import HFSampler
    from tinythinker_ray.train.sft import read_stage
    from tinythinker_ray.world.check import student

    s = check.settings
    mode = get_mode(mode_name)
    path = student(check, family, seed)
    tok = AutoTokenizer.from_pretrained(path)
    cls = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    kwargs = {"dropout_rate": dropout} if dropout is not None and family == "t5" else {}
    torch.manual_seed(seed)
    model = cls.from_pretrained(path, **kwargs)
    teach = RunDir(check.teach_run(seed)).teach
    rows = {st: read_stage(teach.stage(st), mode) for st in mode.stages}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = get_scheduler("cosine", opt, num_warmup_steps=math.ceil(0.1 * steps), num_training_steps=steps)
    rng = random.Random(seed)
    order = {st: [] for st in mode.stages}

    def batch(stage: str) -> dict:
        if len(order[stage]) < s.batch_size:  # a new epoch of this stage, in a new order
            order[stage] = rng.sample(rows[stage], len(rows[stage]))
        picked, order[stage] = order[stage][: s.batch_size], order[stage][s.batch_size:]
        if family == "t5":
            enc = tok([r["input"] for r in picked], return_tensors="pt", padding=True)
            labels = tok([r["target"] for r in picked], return_tensors="pt", padding=True)["input_ids"]
            labels[labels == tok.pad_token_id] = -100
            return {**enc, "labels": labels}
        texts = [r["input"] + " " + r["target"] + tok.eos_token for r in picked]
        enc = tok(texts, return_tensors="pt", padding=True)
        labels = enc["input_ids"].clone()
        for i, r in enumerate(picked):  # the prompt and the padding take no loss
            labels[i, : len(tok(r["input"])["input_ids"])] = -100
        labels[enc["attention_mask"] == 0] = -100
        return {**enc, "labels": labels}

    blocks = [st for st in mode.stages for _ in range(s.interval * (s.options if st == "analyze" else 1))]
    losses, curve, t0 = [], [], time.time()
    model.train()
    for step in range(1, steps + 1):
        loss = model(**batch(blocks[(step - 1) % len(blocks)])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        if step % log_every == 0:
            curve.append({"step": step, "loss": statistics.fmean(losses[-log_every:])})
    seconds = time.time() - t0
    splits = load_benchmark("custom", str(check.data_dir(seed)))
    sampler = HFSampler(model=model, tokenizer=tok, batch_size=64)
    greedy = GenParams(max_tokens=s.max_new_tokens)
    test = accuracy(run_chain(sampler, splits.test, mode, recall=greedy, analyze=greedy))["accuracy"]
    train = accuracy(run_chain(sampler, splits.train[: s.train_sample], mode, recall=greedy,
                               analyze=greedy))["accuracy"]
    return {"curve": curve, "test": test, "train": train, "seconds": round(seconds, 1)}


def ours_curve(check, family: str, seed: int, mode: str, log_every: int) -> list[dict]:
    """The check's phase-1 run: its logged losses, averaged into the plain loop's windows."""
    from tinythinker_ray.rundir import RunDir
    from tinythinker_ray.storage import read_jsonl

    rows = [r for r in read_jsonl(RunDir(check.mode_dir(family, seed, mode)).sft.metrics) if r.get("kind") == "train"]
    out = []
    for end in range(log_every, max((r["step"] for r in rows), default=0) + 1, log_every):
        window = [r["loss"] for r in rows if end - log_every < r["step"] <= end and "loss" in r]
        if window:
            out.append({"step": end, "loss": statistics.fmean(window)})
    return out


def main() -> None:
    from tinythinker_ray.raylib import start_local_ray
    from tinythinker_ray.world.check import Check, Settings, check_of, prepare_seed, run_mode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/learning")
    ap.add_argument("--family", default="t5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", default="recall_summarize")
    ap.add_argument("--steps", type=int, default=None, help="default: the check's")
    ap.add_argument("--lr", type=float, default=None, help="the plain loop's; default: the check's")
    ap.add_argument("--dropout", type=float, default=None, help="T5 dropout in the plain loop (built: 0)")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--no-ours", action="store_true", help="only the plain loop")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

    work = Path(args.work).resolve()
    check = check_of(work) or Check(work, Settings())  # the world and settings the check ran there, if one did
    settings = check.settings
    steps = args.steps or settings.steps
    start_local_ray(4)
    prepare_seed(check, args.seed)
    ours = None if args.no_ours else run_mode(check, args.family, args.seed, args.mode)
    plain = plain_loop(check, args.family, args.seed, args.mode, steps, args.lr or settings.lr_of(args.family),
                       args.dropout, args.log_every)
    curve = {r["step"]: r["loss"] for r in (ours_curve(check, args.family, args.seed, args.mode, args.log_every)
                                             if ours else [])}
    print(f"{'step':>6}  {'ours loss':>10}  {'plain loss':>10}")
    for r in plain["curve"]:
        print(f"{r['step']:>6}  {curve.get(r['step'], float('nan')):>10.4f}  {r['loss']:>10.4f}")
    if ours:
        print(f"chain accuracy, ours:  test {ours['test']:.3f}  train {ours['train']:.3f}")
    print(f"chain accuracy, plain: test {plain['test']:.3f}  train {plain['train']:.3f} ({plain['seconds']} s)")
    # a run with other plain-loop settings gets a file of its own, so the default comparison is never overwritten
    tag = "".join(f"-{k}{v}" for k, v in (("steps", args.steps), ("lr", args.lr), ("dropout", args.dropout)) if v)
    out = HERE / "results" / f"t5_reference-{args.family}-{args.seed}-{args.mode}{tag}.json"
    out.write_text(json.dumps({"args": vars(args), "steps": steps, "ours": ours and {
        k: ours[k] for k in ("test", "train", "steps")} | {"curve": curve}, "plain": plain}, indent=2) + "\n")


if __name__ == "__main__":
    main()
