"""Chain throughput: the reference's approach vs ours, on the same questions and the same causal student.

(a) baseline: what the reference does -- transformers `generate` in one process, stage by stage (a recall
    batch, then every option's analysis, then the summaries), batched (and with all n samples of a prompt
    from one `generate`, which is more than the reference does: it reruns the whole chain once per sample);
(b) ours: what `evaluate()` runs -- `chain_task` in each replica of the Ray Data actor pool
    (`map_with_sampler`), the whole chain of a batch of questions in three `generate` calls of one vLLM
    engine (every question and option in one call, n samples per request, prefix caching on).

Both are greedy (or both sample with --samples K) with the same token budgets. Reported: the end-to-end
time (model load / Ray + engine start included), the start-up alone, and questions/s after start-up (ours:
the replicas' time inside `chain_task`, batches of --batch questions; baseline: the chain calls; start-up is
the rest of the wall time). The last line is `ratio=<ours/baseline questions/s after start-up>`, as
the training benchmark counts steps after start-up; the end-to-end ratio is printed above it and written to
benchmarks/results/chain.json. Start-up is a fixed cost (~25-45 s for Ray + a vLLM-CPU engine vs ~3 s to
load a model into HF), so end to end the pool wins only once a run has enough questions: a real eval is 1221
CSQA questions x K samples.

    .venv/bin/python benchmarks/bench_chain.py [--model tiny-llama|smollm2-135m|<folder>] [--questions 240]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from results_file import save

HERE = Path(__file__).resolve().parent


def baseline(model_path: str, questions, cfg, batch_size: int) -> dict:
    from tinythinker_ray.core.modes import get_mode
    from tinythinker_ray.eval.chain import accuracy, run_chain
    from tinythinker_ray.eval.evaluate import chain_params
    from tinythinker_ray.sampling.hf import HFSampler

    start = time.perf_counter()
    sampler = HFSampler(model_path, batch_size=batch_size)
    loaded = time.perf_counter()
    results = run_chain(sampler, questions, get_mode(cfg.sft.mode), **chain_params(cfg))
    end = time.perf_counter()
    return {"seconds": end - start, "questions_per_s": len(questions) / (end - start),
            "startup_seconds": loaded - start, "steady_questions_per_s": len(questions) / (end - loaded),
            **accuracy(results)}


def timed_chain_task(sampler, rows: list[dict], **kwargs) -> list[dict]:
    """`chain_task` as the pool runs it, plus each row's share of its batch's compute time (the engine is up)."""
    from tinythinker_ray.eval.evaluate import chain_task

    start = time.perf_counter()
    out = chain_task(sampler, rows, **kwargs)
    share = (time.perf_counter() - start) / max(len(out), 1)
    return [{**r, "seconds": share} for r in out]


def ours(model_path: str, questions, cfg, batch: int) -> dict:
    import functools

    import ray

    from tinythinker_ray.core.modes import get_mode
    from tinythinker_ray.eval.chain import ChainResult, accuracy
    from tinythinker_ray.eval.evaluate import chain_params
    from tinythinker_ray.sampling.pool import choose_backend, map_with_sampler

    start = time.perf_counter()
    # workers' engine logs would otherwise stream in after the last line, which must stay `ratio=`
    ray.init(address="local", log_to_driver=False, include_dashboard=False)
    backend = choose_backend(cfg.sampler, model_path)
    sampler_cfg = cfg.sampler.model_copy(update={"backend": backend, "model": model_path})
    task = functools.partial(timed_chain_task, mode=get_mode(cfg.sft.mode), params=chain_params(cfg))
    ds = ray.data.from_items([{"question": json.dumps(q.to_dict())} for q in questions])
    compute, results = 0.0, []
    for row in map_with_sampler(ds, sampler_cfg, task, model=model_path, batch_size=batch).iter_rows():
        compute += row["seconds"]
        results.append([ChainResult.from_dict(c) for c in json.loads(row["chains"])])
    end = time.perf_counter()
    ray.shutdown()
    # timed inside the replica: Ray Data hands finished rows to the driver in bunches, so arrival times would not do
    return {"seconds": end - start, "questions_per_s": len(questions) / (end - start),
            "startup_seconds": end - start - compute, "steady_questions_per_s": len(questions) / compute,
            "backend": backend, **accuracy(results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--questions", type=int, default=240)  # the whole embedded CSQA sample
    ap.add_argument("--batch", type=int, default=40, help="questions per Ray batch (one chain_task call)")
    ap.add_argument("--data", help="a CSQA folder in the official format (default: the embedded sample)")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--hf-batch-size", type=int, default=32)
    ap.add_argument("--kv-cache-gib", type=float, default=1.0)
    ap.add_argument("--out", default=str(HERE / "results" / "chain.json"))
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tinythinker_ray.config import load_config
    from tinythinker_ray.data.loaders import load_benchmark
    from tinythinker_ray.models import resolve_model

    model_path = resolve_model(args.model)
    splits = load_benchmark("csqa", args.data)
    questions = (splits.test + splits.valid + splits.train)[: args.questions]
    cfg = load_config(None, [f"student.max_new_tokens={args.max_new_tokens}", f"eval.samples={args.samples}",
                             "sampler.backend=vllm", f"sampler.replicas={args.replicas}",
                             f"sampler.kv_cache_gib={args.kv_cache_gib}", "sampler.max_model_len=1024",
                             f"eval.batch_size={args.batch}"])

    base = baseline(model_path, questions, cfg, args.hf_batch_size)
    mine = ours(model_path, questions, cfg, args.batch)
    for name, r in (("baseline (HF generate, stage by stage, 1 process)", base),
                    (f"ours (Ray actor pool x{args.replicas}, {mine['backend']})", mine)):
        print(f"{name}: {r['questions_per_s']:.3f} questions/s end to end ({r['seconds']:.1f} s), start-up "
              f"{r['startup_seconds']:.1f} s, {r['steady_questions_per_s']:.3f} questions/s after start-up")
    ratio = mine["steady_questions_per_s"] / base["steady_questions_per_s"]
    end_to_end = mine["questions_per_s"] / base["questions_per_s"]
    print(f"end-to-end ratio (start-up included, {len(questions)} questions): {end_to_end:.3f}")
    save("chain", {"model": args.model, "questions": len(questions), "samples": args.samples, "batch": args.batch,
                   "max_new_tokens": args.max_new_tokens, "replicas": args.replicas, "baseline": base, "ours": mine,
                   "ratio_end_to_end": end_to_end}, ratio, path=args.out)


if __name__ == "__main__":  # vLLM spawns its engine: the guard is required
    main()
