"""`tinythinker data prepare | show | synth`: load a benchmark, split it as the paper does, print counts and a
sample; or write the synthetic learning-check dataset (world/synth.py)."""

from __future__ import annotations

from collections import Counter

from .config import Config
from .core.modes import get_mode, mode_sample
from .data.loaders import load_benchmark, load_dataset_cfg
from .errors import ConfigError
from .rundir import RunDir
from .storage import write_jsonl


def split_table(splits) -> str:
    """One line per split: question count, options per question, and how often each answer label is right."""
    rows = [f"{'split':<11}{'questions':>10}  {'options':<8} answers"]
    for name, label in (("train", "train"), ("valid", "validation"), ("test", "test")):
        qs = splits.get(name)
        sizes = sorted({len(q.options) for q in qs})
        options = "-" if not sizes else str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        counts = Counter(q.answer for q in qs)
        answers = "  ".join(f"{a} {100 * n / len(qs):.0f}%" for a, n in sorted(counts.items())) or "-"
        rows.append(f"{label:<11}{len(qs):>10}  {options:<8} {answers}")
    return "\n".join(rows)


def synth_main(cfg: Config) -> int:
    """`data synth`: write the synthetic world and its questions (world/synth.py), then show them like `show`."""
    from .world import synth

    out = synth.out_dir(cfg)
    counts = synth.write(cfg.synth, out)
    world = synth.load_world(out)
    s = cfg.synth
    print(f"synth world (seed {s.seed}): {len(world.categories)} categories, {len(world.entities)} entities, "
          f"{len(world.properties)} properties; pairs asked {len(world.pairs['train'])} train / "
          f"{len(world.pairs['valid'])} valid / {len(world.pairs['test'])} test (held out of train)")
    print(f"wrote {counts['train']} / {counts['valid']} / {counts['test']} questions ({s.options} options, "
          f"chance {1 / s.options:.0%}) + world.json + fewshot_rationales.json to {out}")
    print(f"use: --data.name custom --data.path {out} --teacher.backend rules --teacher.model {out / synth.WORLD_FILE}"
          f" --teacher.fewshot_path {out}")
    splits = load_benchmark("custom", str(out))
    print(split_table(splits))
    print(mode_sample(splits.train[0], get_mode(cfg.sft.mode)))
    return 0


def main(cfg: Config, words: list[str]) -> int:
    action = words[0] if words else "show"
    if action not in ("prepare", "show", "synth") or len(words) > 1:
        raise ConfigError(f"bad arguments 'data {' '.join(words)}' (usage: tinythinker data prepare | show | synth, "
                          "with --data.name, --data.path, --data.seed, --skip-bad-rows, --sft.mode; "
                          "synth: --synth.*)")
    if action == "synth":
        return synth_main(cfg)
    d = cfg.data
    splits = load_dataset_cfg(d)
    print(f"{d.name} ({d.path or 'embedded sample'}), split seed {d.seed}: "
          f"{len(splits.train)} / {len(splits.valid)} / {len(splits.test)} (train / validation / test)")
    print(split_table(splits))
    if splits.skipped:
        n = sum(splits.skipped.values())
        print(f"skipped {n} bad row{'' if n == 1 else 's'} (--skip-bad-rows):")
        for reason, n in sorted(splits.skipped.items(), key=lambda kv: -kv[1]):
            print(f"  {n:>6}  {reason}")
    if action == "prepare":
        out = RunDir(cfg.run_dir).prepared
        for name in ("train", "valid", "test"):
            write_jsonl(out / f"{name}.jsonl", [q.to_dict() for q in splits.get(name)])
        print(f"wrote {out}/{{train,valid,test}}.jsonl")
    if splits.train:
        print(mode_sample(splits.train[0], get_mode(cfg.sft.mode)))
    return 0
