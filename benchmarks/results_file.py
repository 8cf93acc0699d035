"""The result file every benchmark writes, results/<name>.json: its numbers with the machine and its load beside
them (ratios are same-run, but a reader should see how busy the machine was), then the `ratio=` line that
ends every benchmark's output."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def save(name: str, result: dict, ratio: float, path: str | Path | None = None) -> None:
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "machine": platform.machine(), "load_average": os.getloadavg()}
    out.write_text(json.dumps({**result, **machine, "ratio": ratio}, indent=2) + "\n")
    print(f"ratio={ratio:.3f}")
