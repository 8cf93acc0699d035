"""The repository passes its own linter (pyproject's [tool.ruff]), so CI catches what review misses, such as
an assert on a bare string (PLW0129), which always passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    got = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                         text=True, cwd=ROOT)
    assert got.returncode == 0, got.stdout + got.stderr
