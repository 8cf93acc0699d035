"""The docs point at files that ship: every repository path the README, FIDELITY.md and the benchmark docs quote
in backticks exists, so a renamed result or module is caught here, not by a reader following a dead path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("benchmarks", "tinythinker_ray", "tests", "cluster", "jobs", ".ci")
# written by a benchmark when it runs on the machine it measures (a GPU, a paid endpoint), not committed
WRITTEN_WHEN_RUN = {"benchmarks/results/teacher.json", "benchmarks/results/gpu_check.json"}
DOCS = ("README.md", "FIDELITY.md", "benchmarks/README.md", "benchmarks/results/learning.md")
# a result file named from benchmarks/ (`results/x.json`) or by its name alone (`learning-x.md`)
RESULT = re.compile(r"results/([\w.*-]+\.\w+)|((learning|replicates|retest|t5_reference|reflect-sweep)[\w.*-]*\.(md|json|png|csv))")


def expand(path: str) -> list[str]:
    """`a-{x,y}.md` -> a-x.md, a-y.md (the docs name families of result files this way)."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in expand(path[:m.start()] + alt + path[m.end():])]


def quoted_paths(text: str) -> list[str]:
    """The repository paths quoted in backticks, relative to the root; a placeholder (<stage>) is no path."""
    out = []
    for span in re.findall(r"`([^`\s]+)`", text):
        span = span.split("::")[0].rstrip(".,;:)")
        for p in expand(span) if "<" not in span else []:
            if p.split("/")[0] in TOP:
                out.append(p)
            elif m := RESULT.fullmatch(p):
                out.append("benchmarks/results/" + (m.group(1) or m.group(2)))
    return out


def test_expand_and_quoted_paths():
    assert expand("a-{x,y}.{md,json}") == ["a-x.md", "a-x.json", "a-y.md", "a-y.json"]
    got = quoted_paths("see `learning-{a,b}.md`, `results/retest-c.json`, `tests/t.py::test_x` and "
                       "`runs/x/report.md` `<stage>.json` `record.json`")
    assert got == ["benchmarks/results/learning-a.md", "benchmarks/results/learning-b.md",
                   "benchmarks/results/retest-c.json", "tests/t.py"]


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_doc_quotes_exists(doc):
    missing = [p for p in quoted_paths((ROOT / doc).read_text())
               if p not in WRITTEN_WHEN_RUN and not list(ROOT.glob(p))]
    assert not missing, f"{doc} quotes paths that do not exist: {missing}"


def test_every_test_fidelity_md_names_as_pinning_a_decision_exists():
    """FIDELITY.md names each decision's test as `test_file.py::test_name` (`::test_name` for the same file)."""
    named, file = [], None
    for span in re.findall(r"`([^`\s]+)`", (ROOT / "FIDELITY.md").read_text()):
        if m := re.fullmatch(r"(test_\w+\.py)?::(test_\w+)", span):
            file = m.group(1) or file
            named.append((file, m.group(2)))
    assert len(named) > 10  # the parse still finds the table's tests
    missing = [f"{f}::{t}" for f, t in named
               if f is None or not (ROOT / "tests" / f).exists()
               or not re.search(rf"^(async )?def {t}\b", (ROOT / "tests" / f).read_text(), re.M)]
    assert not missing, f"FIDELITY.md names tests that do not exist: {missing}"
