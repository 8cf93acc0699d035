"""Training throughput: our Ray Train + DeepSpeed loop against a plain torch loop on the same model and batches.

Stage rows are templated from the embedded CSQA sample (as the tests' overfit set), tokenized once, and
scheduled with the phase-1 interval plan. Three runs of the same steps:
  plain    one process, torch AdamW, the same collate / loss / lr schedule / clipping, 1 thread per process;
  ours x1  fit() with 1 Ray Train worker (1 CPU) and DeepSpeed at --zero (one rank runs ZeRO-0: deepspeed_config);
  ours x2  fit() with 2 workers (each step then trains 2 x batch rows).
Steps/s count only the training steps (batch fetch or wait + forward + backward + optimizer); start-up (Ray Train
workers, imports, model load, deepspeed.initialize, Ray Data's first fetch, checkpoint, teardown) is reported
apart. The last line is
`ratio=<ours x1 steps/s / plain steps/s>`; the JSON goes to benchmarks/results/train.json.

    .venv/bin/python benchmarks/bench_train.py [--model tiny-t5] [--steps 200] [--batch 8] [--zero 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from results_file import save  # noqa: E402

from tinythinker_ray.config import TrainConfig  # noqa: E402
from tinythinker_ray.core import format as fmt  # noqa: E402
from tinythinker_ray.core.modes import MODES  # noqa: E402
from tinythinker_ray.data.loaders import load_benchmark  # noqa: E402
from tinythinker_ray.models import load_student, resolve_model  # noqa: E402
from tinythinker_ray.rundir import TrainDir  # noqa: E402
from tinythinker_ray.train.batches import collate_sft, encode_example, prepare_stage, tokenizer_for  # noqa: E402
from tinythinker_ray.train.loop import FitSpec, deepspeed_config, fit, lr_scheduler_factory  # noqa: E402
from tinythinker_ray.train.schedule import schedule, stage_plan, steps_per_epoch  # noqa: E402
from tinythinker_ray.train.sft import SFT  # noqa: E402


def stage_rows(n_questions: int, rationales: int = 8) -> dict[str, list[dict]]:
    """Recall / analyze / summarize rows with templated rationales (the shape and lengths of real ones), and as
    many rationales per question as the paper keeps (8): epochs as long, relative to a batch, as real ones."""
    rows: dict[str, list[dict]] = {"recall": [], "analyze": [], "summarize": []}
    for q in load_benchmark("csqa").train[:n_questions]:
        recall = f"{q.stem.split('?')[0]} is about {dict(q.options)[q.answer]}, which is what people usually mean."
        analyses = [(lab, f"{text} {'fits the question, so it is correct' if lab == q.answer else 'does not fit'}.")
                    for lab, text in q.options]
        for _ in range(rationales):
            rows["recall"].append({"input": fmt.recall_input(q), "target": recall})
            rows["analyze"] += [{"input": fmt.analyze_input(q, lab, recall), "target": t} for lab, t in analyses]
            rows["summarize"].append({"input": fmt.summarize_input(q, recall, analyses),
                                      "target": fmt.summarize_target(q.answer)})
    return rows


def plain_loop(model_path: str, rows: dict, steps: list[str], batch: int, spec: FitSpec) -> dict:
    """The baseline: the same batches in the same stage order, no Ray, no DeepSpeed."""
    torch.set_num_threads(1)  # a Ray worker with 1 CPU runs 1 thread
    tok, seq2seq = tokenizer_for(model_path)
    encoded = {s: [encode_example(tok, r["input"], r["target"], seq2seq=seq2seq, max_length=200)[:2] for r in rs]
               for s, rs in rows.items()}
    t0 = time.time()
    model, _ = load_student(model_path)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)
    sched = lr_scheduler_factory(spec)(opt)
    start = time.time() - t0
    pos = dict.fromkeys(encoded, 0)
    train_seconds = 0.0
    for stage in steps:
        t = time.perf_counter()
        if pos[stage] + batch > len(encoded[stage]):
            pos[stage] = 0
        chunk = encoded[stage][pos[stage]:pos[stage] + batch]
        pos[stage] += batch
        b = collate_sft({"input_ids": [c[0] for c in chunk], "labels": [c[1] for c in chunk]}, tok.pad_token_id)
        loss, _ = SFT.loss(model, b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        train_seconds += time.perf_counter() - t
    return {"steps": len(steps), "train_seconds": train_seconds, "steps_per_s": len(steps) / train_seconds,
            "samples_per_s": len(steps) * batch / train_seconds, "startup_seconds": start}


def ours(model_path: str, rows: dict, args, workers: int) -> dict:
    datasets, sizes = {}, {}
    for stage, stage_rows_ in rows.items():
        datasets[stage], sizes[stage], _ = prepare_stage(stage_rows_, model_path=model_path,
                                                      max_length=200, batch_size=args.batch, world_size=workers)
    plan = stage_plan(MODES["recall_analyze_summarize"], args.interval, 5)
    steps = schedule(sizes, plan, max_steps=args.steps)
    train = TrainConfig(num_workers=workers, zero_stage=args.zero, log_every=max(args.steps // 4, 1))
    with tempfile.TemporaryDirectory() as out:
        spec = FitSpec(model_path=model_path, out=TrainDir(Path(out)), steps=steps, steps_per_epoch=steps_per_epoch(sizes, plan),
                       batch_size=args.batch, lr=5e-4, train=train, warmup=0.1, name="bench", phase="bench")
        t0 = time.time()
        result = fit(spec, datasets, SFT)
        wall = time.time() - t0
    zero = deepspeed_config(train, batch_size=args.batch, lr=5e-4, world_size=workers)["zero_optimization"]["stage"]
    return {"workers": workers, "zero_stage": zero, "steps": result.steps, "train_seconds": result.train_seconds,
            "data_seconds": result.data_seconds,
            # waiting for a batch is part of a step, as the plain loop's slicing and collate are
            "steps_per_s": result.steps / (result.train_seconds + result.data_seconds),
            "samples_per_s": result.steps * args.batch * workers / (result.train_seconds + result.data_seconds),
            "wall_seconds": wall, "startup_seconds": wall - result.train_seconds - result.data_seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-t5")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--zero", type=int, default=2)
    ap.add_argument("--interval", type=int, default=2)
    ap.add_argument("--questions", type=int, default=64)
    args = ap.parse_args()

    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false",
                                       **{k: v for k, v in os.environ.items() if k == "TINYTHINKER_CACHE"}}})
    model_path = resolve_model(args.model)
    rows = stage_rows(args.questions)
    one = ours(model_path, rows, args, 1)
    # the plain loop replays the exact schedule of the 1-worker run
    sizes = {s: len(r) // args.batch for s, r in rows.items()}
    plan = stage_plan(MODES["recall_analyze_summarize"], args.interval, 5)
    steps = schedule(sizes, plan, max_steps=args.steps)
    spec = FitSpec(model_path=model_path, out=TrainDir(Path("-")), steps=steps, steps_per_epoch=steps_per_epoch(sizes, plan),
                   batch_size=args.batch, lr=5e-4, train=TrainConfig(), warmup=0.1)
    plain = plain_loop(model_path, rows, steps, args.batch, spec)
    two = ours(model_path, rows, args, 2)
    ray.shutdown()
    report = {"model": args.model, "batch_per_worker": args.batch, "steps": args.steps,
              "plain": plain, "ours_1_worker": one, "ours_2_workers": two}
    for name in ("plain", "ours_1_worker", "ours_2_workers"):
        r = report[name]
        wait = f"  data wait {r['data_seconds']:5.1f} s" if "data_seconds" in r else ""
        print(f"{name:>15}: {r['steps_per_s']:6.2f} steps/s  {r['samples_per_s']:7.1f} samples/s  "
              f"start-up {r['startup_seconds']:5.1f} s{wait}")
    save("train", report, one["steps_per_s"] / plain["steps_per_s"])


if __name__ == "__main__":
    main()
