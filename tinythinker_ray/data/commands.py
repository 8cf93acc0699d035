"""`tinythinker data prepare | show`: load a benchmark, split it as the paper does, print counts and a sample."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from . import format as fmt
from .loaders import load_benchmark


def three_stage_sample(q) -> str:
    """The question rendered as its recall input, one analyze input, and the summarize target."""
    first = q.labels[0]
    return "\n".join([
        "--- recall input ---", fmt.recall_input(q),
        "--- analyze input (first option) ---", fmt.analyze_input(q, first, "<recalled knowledge>"),
        "--- summarize input ---",
        fmt.summarize_input(q, "<recalled knowledge>", [(lab, f"<analysis of {lab}>") for lab in q.labels]),
        "--- summarize target ---", fmt.summarize_target(q.answer),
    ])


def main(cfg: Config, words: list[str]) -> int:
    action = words[0] if words else "show"
    if action not in ("prepare", "show"):
        raise ConfigError(f"unknown action 'data {action}' (allowed: prepare, show)")
    d = cfg.data
    splits = load_benchmark(d.name, d.path, seed=d.seed, skip_bad_rows=d.skip_bad_rows)
    source = d.path or "embedded sample"
    print(f"{d.name} ({source}): train {len(splits.train)} / validation {len(splits.valid)} / test {len(splits.test)}")
    print(f"{len(splits.train)} / {len(splits.valid)} / {len(splits.test)}")
    for reason, n in sorted(splits.skipped.items()):
        print(f"skipped {n} rows: {reason}")
    if action == "prepare":
        from ..storage import write_jsonl
        from pathlib import Path

        out = Path(cfg.run_dir) / "data"
        for name in ("train", "valid", "test"):
            write_jsonl(out / f"{name}.jsonl", [q.to_dict() for q in splits.get(name)])
        print(f"wrote {out}/{{train,valid,test}}.jsonl")
    if splits.train:
        print(three_stage_sample(splits.train[0]))
    return 0
