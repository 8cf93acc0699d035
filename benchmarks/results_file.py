"""What the benchmarks share: the result file every one writes, results/<name>.json (its numbers with the
machine and its load beside them: ratios are same-run, but a reader should see how busy the machine was) with
the `ratio=` line that ends every benchmark's output, and running each size of a scaling benchmark in a
child process of its own."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def save(name: str, result: dict, ratio: float, path: str | Path | None = None) -> None:
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "machine": platform.machine(), "load_average": os.getloadavg()}
    out.write_text(json.dumps({**result, **machine, "ratio": ratio}, indent=2) + "\n")
    print(f"ratio={ratio:.3f}")


def each_size_in_a_child(script: str, sizes: list[int]) -> Iterator[dict]:
    """`script --one N` for each size, in a fresh process each, so that each peak RSS is that size's alone;
    yields the JSON dict each child prints last."""
    for n in sizes:
        out = subprocess.run([sys.executable, script, "--one", str(n)], check=True, capture_output=True, text=True)
        yield json.loads(out.stdout.strip().splitlines()[-1])
