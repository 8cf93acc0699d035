"""Chain throughput: the reference's approach vs ours, on the same questions and the same causal student.

(a) baseline: what the reference does -- transformers `generate` in one process, stage by stage (a recall
    batch, then every option's analysis, then the summaries), batched;
(b) ours: `evaluate()` -- the whole chain inside each replica of the Ray Data actor pool, on vLLM.

Both are greedy (or both sample with --samples K) with the same token budgets, and both are timed end to end
(model load / Ray + engine start included: what a user waits for). Prints questions/s of each and
`ratio=<ours/baseline>` last; writes benchmarks/results/chain.json.

    .venv/bin/python benchmarks/bench_chain.py [--model tiny-llama|smollm2-135m|<folder>] [--questions 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def baseline(model_path: str, questions, cfg, batch_size: int) -> dict:
    from tinythinker_ray.eval.chain import accuracy, run_chain
    from tinythinker_ray.eval.evaluate import chain_params
    from tinythinker_ray.sampling.hf import HFSampler

    start = time.perf_counter()
    sampler = HFSampler(model_path, batch_size=batch_size)
    results = run_chain(sampler, questions, cfg.sft.mode, **chain_params(cfg))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "questions_per_s": len(questions) / seconds, **accuracy(results)}


def ours(model_path: str, questions, cfg) -> dict:
    import ray

    from tinythinker_ray.eval.evaluate import evaluate

    start = time.perf_counter()
    # workers' engine logs would otherwise stream in after the last line, which must stay `ratio=`
    ray.init(address="local", log_to_driver=False, include_dashboard=False)
    with tempfile.TemporaryDirectory() as tmp:
        summary = evaluate(cfg, model_path, questions, "bench", Path(tmp) / "eval")
    seconds = time.perf_counter() - start
    ray.shutdown()
    return {"seconds": seconds, "questions_per_s": len(questions) / seconds, "accuracy": summary["accuracy"],
            "sc_accuracy": summary["sc_accuracy"], "backend": summary["backend"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--questions", type=int, default=64)
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
    splits = load_benchmark("csqa")
    questions = (splits.test + splits.valid + splits.train)[: args.questions]
    cfg = load_config(None, [f"student.max_new_tokens={args.max_new_tokens}", f"eval.samples={args.samples}",
                             "sampler.backend=vllm", f"sampler.replicas={args.replicas}",
                             f"sampler.kv_cache_gib={args.kv_cache_gib}", "sampler.max_model_len=1024",
                             f"eval.batch_size={max(1, len(questions) // args.replicas)}"])

    base = baseline(model_path, questions, cfg, args.hf_batch_size)
    print(f"baseline (HF generate, stage by stage, 1 process): {base['questions_per_s']:.3f} questions/s "
          f"({base['seconds']:.1f} s)")
    mine = ours(model_path, questions, cfg)
    print(f"ours (Ray actor pool x{args.replicas}, {mine['backend']}): {mine['questions_per_s']:.3f} questions/s "
          f"({mine['seconds']:.1f} s)")
    ratio = mine["questions_per_s"] / base["questions_per_s"]
    result = {"model": args.model, "questions": len(questions), "samples": args.samples,
              "max_new_tokens": args.max_new_tokens, "replicas": args.replicas, "cpus": os.cpu_count(),
              "machine": platform.machine(), "baseline": base, "ours": mine, "ratio": ratio}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":  # vLLM spawns its engine: the guard is required
    main()
