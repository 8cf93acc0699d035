"""Teacher sampling throughput: HF `generate` in one process vs our Ray Data actor pool (vllm, hf backends).

All three answer the same questions with the same chat prompts (the paper's teacher prompt with `--shots`
few-shot rationales), `--samples` samples each at temperature 0.8 and `--max-tokens`, unconstrained (HF has no
regex constraint). The pool runs exactly what `tinythinker teach` runs (`map_with_sampler` + `sample_block`).
Timings are wall clock from "start" to the last sample, engine start included (model load for HF, actor +
engine start for the pool; Ray itself is started before). A replica holds 1 CPU, so Ray gives its torch one
thread; the baseline keeps torch's default (all cores) unless --threads. The last line is
`ratio=<vllm pool / HF>`.

    .venv/bin/python benchmarks/bench_teacher.py [--model tiny-llama|smollm2-135m] [--questions 64]
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

from results_file import save

from tinythinker_ray.config import TeacherConfig
from tinythinker_ray.data.loaders import load_benchmark, load_fewshot
from tinythinker_ray.models import resolve_model
from tinythinker_ray.sampling.base import GenParams
from tinythinker_ray.teacher import prompt
from tinythinker_ray.teacher.asking import sample_block


def hf_in_process(model: str, questions, system: str, args) -> tuple[int, float]:
    import torch

    from tinythinker_ray.sampling.hf import HFSampler

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sampler = HFSampler(model, batch_size=args.batch_size)
    params = GenParams(n=args.samples, temperature=0.8, max_tokens=args.max_tokens, seed=0)
    n = sum(len(o) for o in sampler.generate([prompt.messages(q, system) for q in questions], params))
    return n, time.perf_counter() - t0


def pool(backend: str, model: str, questions, system: str, args) -> tuple[int, float]:
    import ray.data

    from tinythinker_ray.sampling.pool import map_with_sampler

    cfg = TeacherConfig(backend=backend, model=model, batch_size=args.batch_size, replicas=1,
                        max_model_len=args.max_model_len, kv_cache_gib=1.0)
    rows = [{"qid": q.id, "question": json.dumps(q.to_dict()), "n": args.samples,
             "max_tokens": args.max_tokens} for q in questions]
    task = partial(sample_block, system=system, round=0, temperature=0.8, seed=0, line_chars=None)
    t0 = time.perf_counter()
    ds = map_with_sampler(ray.data.from_items(rows), cfg, task, model=model, batch_size=args.batch_size)
    n = sum(len(json.loads(s)["completions"]) for b in ds.iter_batches(batch_size=None) for s in b["reply"])
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--shots", type=int, default=1)  # tiny-llama has 1024 positions: 1 shot + 128 tokens fit
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the HF baseline (0: default)")
    args = ap.parse_args()

    import ray
    import ray.data

    model = resolve_model(args.model)
    questions = load_benchmark("csqa").train[: args.questions]
    system = prompt.system_message(load_fewshot("csqa"), args.shots, seed=42)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(f"{len(questions)} questions x {args.samples} samples, max_tokens {args.max_tokens}, "
          f"model {args.model}, {args.shots} shots, 1 replica of 1 CPU")
    results = {}
    for name, run in (("hf in one process", partial(hf_in_process, model)),
                      ("pool hf", partial(pool, "hf", model)), ("pool vllm", partial(pool, "vllm", model))):
        n, seconds = run(questions, system, args)
        results[name] = n / seconds
        print(f"{name:<18} {n:>5} samples  {seconds:7.1f} s  {n / seconds:8.2f} samples/s", flush=True)
    ray.shutdown()
    ratio = results["pool vllm"] / results["hf in one process"]
    save("teacher", {"model": args.model, "questions": len(questions), "samples": args.samples,
                     "max_tokens": args.max_tokens, "samples_per_s": results}, ratio)


if __name__ == "__main__":
    main()
