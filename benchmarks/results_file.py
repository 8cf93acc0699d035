"""What the benchmarks share: the result file every one writes, results/<name>.json (its numbers with the
machine and its load beside them: ratios are same-run, but a reader should see how busy the machine was) with
the `ratio=` line that ends every benchmark's output, and the main of the two scaling benchmarks."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def save(name: str, result: dict, ratio: float, path: str | Path | None = None) -> None:
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "machine": platform.machine(), "load_average": os.getloadavg()}
    out.write_text(json.dumps({**result, **machine, "ratio": ratio}, indent=2) + "\n")
    print(f"ratio={ratio:.3f}")


def scaling_main(name: str, doc: str, script: str, one: Callable[[int], dict], line: Callable[[dict], str]) -> None:
    """The main of a scaling benchmark: `one(n)` measures one size and returns {..., rows_per_cpu_s,
    peak_rss_mib}; each size runs in a fresh child process (`script --one N`), so that each peak RSS is that
    size's alone; `line(result)` prints it. ratio = rows per CPU-second at the largest size / at the smallest
    (CPU time, not wall: on a shared machine the wall clock measures the neighbours as much as this code)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size, JSON out
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    results = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, script, "--one", str(n)], check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(line(results[-1]), flush=True)
    save(name, {"sizes": results}, results[-1]["rows_per_cpu_s"] / results[0]["rows_per_cpu_s"])
