"""The end-of-run report: a Markdown page and a PNG plot built only from what the run directory holds.

Sections: teacher stats, phase-1 evaluation points, accuracy per split and per reflect iteration, reward
margins, timings per step, and a few example chains (right and wrong). Everything is read from files, so
`report` works on a finished, a resumed or a half-finished run.
"""

from __future__ import annotations

import json
from pathlib import Path

from .reflect.pairs import paired_stages
from .rundir import RunDir
from .storage import atomic_open, atomic_write_text, read_jsonl


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None or v == "":  # a value the run did not record: an empty cell reads as a broken table
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _rounds(run: RunDir) -> list[dict]:
    """The record of every finished reflect round, in round order."""
    return [rec for it in run.rounds() if (rec := _json(it.record))]


# The teacher's nested stats (teach/stats.json) as tables: what the first column holds and a header per inner key,
# so no table is headed "rows | rows | written".
NESTED = {"rows": ("stage", {"rows": "rows built", "written": "rows written (deduplicated)"}),
          "dropped": ("reason", {"count": "samples dropped"}),
          "rounds": ("round", {"questions": "questions asked", "samples": "samples", "parsed": "parsed"})}


def _nested_table(name: str, value: dict | list) -> str:
    """{stage: {rows, written}}, {reason: n} or [{round, questions, ...}] as a table that says what it counts."""
    first, headers = NESTED.get(name, (name, {}))
    if isinstance(value, list):  # one row per item, keyed by its first column
        value = {row.get(first, i): {k: v for k, v in row.items() if k != first} for i, row in enumerate(value)}
    inner = list(dict.fromkeys(k for v in value.values() if isinstance(v, dict) for k in v)) or ["count"]
    rows = [[key, *(v.get(k) for k in inner)] if isinstance(v, dict) else [key, v] for key, v in value.items()]
    return _table([first, *(headers.get(k, k) for k in inner)], rows)


def _loss_at(metrics: list[dict], step: int) -> float | None:
    """The training loss last logged at or before `step` (eval rows carry none of their own)."""
    return next((m["loss"] for m in reversed(metrics) if "loss" in m and m.get("step", 0) <= step), None)


def plot(run: RunDir, out: Path) -> Path | None:
    """Validation accuracy and chosen-rejected margin over phase 1 and the reflect rounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sft = _json(run.eval("valid-sft").summary) or {}
    rounds = _rounds(run)
    if not sft and not rounds:
        return None
    xs = ["phase 1"] + [f"round {r.get('round', i + 1)}" for i, r in enumerate(rounds)]
    acc = [sft.get("accuracy")] + [r.get("val_accuracy") for r in rounds]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(xs, [a if a is not None else float("nan") for a in acc], marker="o")
    ax[0].set_title("validation accuracy")
    ax[0].set_ylim(0, 1)
    if rounds:
        ax[1].plot(xs[1:], [r.get("margin_end", float("nan")) for r in rounds], marker="o", label="end of round")
        ax[1].plot(xs[1:], [r.get("margin_start", float("nan")) for r in rounds], marker="x", label="start")
        ax[1].legend()
    ax[1].set_title("chosen - rejected reward margin")
    for a in ax:
        a.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    with atomic_open(out, binary=True) as f:  # written whole, then renamed: a reader never sees half a PNG
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    return out


def _examples(run: RunDir, k: int = 3) -> str:
    """A few chains from the last test evaluation: right ones and wrong ones."""
    evals = sorted((e.results for e in run.evals() if e.root.name.startswith("test") and e.results.exists()),
                   key=lambda p: p.stat().st_mtime)
    if not evals:
        return "_no test evaluation yet_"
    rows = list(read_jsonl(evals[-1]))
    right = [r for r in rows if r.get("correct")][:k]
    wrong = [r for r in rows if not r.get("correct")][:k]
    out = []
    for r in right + wrong:
        chain = r.get("chains", [r])[0] if "chains" in r else r
        mark = "right" if r.get("correct") else "wrong"
        out.append(f"**{r.get('id', chain.get('question_id', '?'))}** ({mark}; label {r.get('label')}, "
                   f"predicted {r.get('prediction')})\n")
        if r.get("question"):
            out.append(f"> {r['question']}\n")
        out.append(f"- recall: {chain.get('recall')}")
        for label, text in chain.get("analyses") or []:
            out.append(f"- analyze {label}: {text}")
        out.append(f"- summary: {chain.get('summary')}\n")
    return "\n".join(out)


def write_report(run: RunDir | str | Path) -> Path:
    run = run if isinstance(run, RunDir) else RunDir(run)
    parts = [f"# tinythinker-ray report: `{run.uri}`\n"]
    stats = _json(run.teach.stats)
    if stats:
        flat = [[k, v] for k, v in stats.items() if not isinstance(v, (dict, list))]
        parts += ["## Teacher", _table(["stat", "value"], flat)]
        if shots := stats.get("fewshot"):  # where the teacher's few-shot examples came from, in one line
            parts.append(f"\nfew-shot examples: {shots['examples']}, {shots['source']} ({shots['origin']})")
        for k, v in stats.items():
            if isinstance(v, (dict, list)) and v and k != "fewshot":
                parts += [f"\n{k}:", _nested_table(k, v)]
    evals = []
    for ev in run.evals():
        if not (e := _json(ev.summary)):
            continue
        evals.append([ev.root.name, e.get("accuracy"), e.get("lenient_accuracy", "-"), e.get("sc_accuracy"),
                      e.get("n", e.get("questions"))])
    if evals:  # accuracy: "the answer is option X." exactly, as the authors score; lenient: case, ( ) and "." free
        parts += ["\n## Accuracy", _table(["evaluation", "accuracy", "lenient", "self-consistency", "questions"], evals)]
    metrics = list(read_jsonl(run.sft.metrics))
    points = [m for m in metrics if "val_accuracy" in m]
    if points:
        parts += ["\n## Phase 1 evaluation points",
                  _table(["step", "val accuracy", "train loss (last logged)"],
                         [[m.get("step"), m["val_accuracy"], _loss_at(metrics, m.get("step", 0))] for m in points])]
    rounds = _rounds(run)
    if rounds:
        stages = paired_stages(rounds)
        parts += ["\n## Reflection rounds", _table(
            ["round", *(f"{s} pairs" for s in stages), "margin start", "margin end", "val accuracy"],
            [[r.get("round"), *(r.get(f"{s}_pairs") for s in stages), r.get("margin_start"),
              r.get("margin_end"), r.get("val_accuracy")] for r in rounds])]
    png = plot(run, run.plot)
    if png:
        parts += [f"\n![accuracy and margins]({png.name})"]
    steps = run.manifest.data["steps"]
    if steps:
        # a reflect round keeps its seconds in its record; a driver's own mark (sft) has none: "-"
        parts += ["\n## Steps", _table(["step", "seconds"], [[k, v.get("seconds", (v.get("record") or {}).get(
            "seconds"))] for k, v in steps.items()])]
    parts += ["\n## Example chains (test)", _examples(run)]
    atomic_write_text(run.report, "\n".join(parts) + "\n")
    return run.report
