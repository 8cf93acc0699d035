"""`tinythinker <command>`: parse, load the config, call one driver.

Every command takes `--config FILE` and overrides, written `--section.key value`, `--section.key=value` or
`section.key=value`; a few commands have short aliases (e.g. `eval --model X` = `--student.model X`).
Drivers are imported lazily so `tinythinker data show` does not pay for importing Ray and torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import load_config
from .errors import TinyThinkerError

# command -> (driver "module:function", help, aliases {flag: config key})
COMMANDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "teach": ("tinythinker_ray.teacher.distill:main", "teacher rationales -> recall/analyze/summarize datasets", {}),
    "sft": ("tinythinker_ray.train.sft:main", "phase 1: three-stage SFT on Ray Train + DeepSpeed",
            {"--model": "student.model", "--mode": "sft.mode"}),
    "eval": ("tinythinker_ray.eval.evaluate:main", "run the recall -> analyze -> summarize chain and score it",
             {"--model": "student.model", "--split": "eval.split", "--samples": "eval.samples"}),
    "reflect": ("tinythinker_ray.reflect.iterate:main", "phase 2: self-generated pairs and iterative RPO",
                {"--model": "student.model", "--iterations": "reflect.iterations"}),
    "run": ("tinythinker_ray.pipeline:main", "teach -> sft -> eval -> reflect -> eval, resumable", {}),
    "tune": ("tinythinker_ray.tune:main", "Ray Tune sweep over phase-1 / phase-2 hyperparameters", {}),
    "data": ("tinythinker_ray.data_cli:main", "data prepare | show: load, split, print counts and a sample", {}),
    "ask": ("tinythinker_ray.ask:main", "ask a trained student a question and print its chain",
            {"--model": "student.model", "--samples": "eval.samples"}),
    "export": ("tinythinker_ray.export:main", "write the best student as a clean HF folder with a model card", {}),
    "models": ("tinythinker_ray.models_cli:main", "models import smollm2-135m | build tiny-t5 | tiny-llama", {}),
}


# `tinythinker run` with no --config runs the embedded default: a tiny-but-real CPU configuration.
DEFAULT_CONFIG = {"run": "local-tiny"}


def split_overrides(rest: list[str], aliases: dict[str, str]) -> tuple[list[str], list[str]]:
    """Separate `--a.b v` / `--a.b=v` / `a.b=v` overrides from positional words (e.g. `prepare`)."""
    overrides, words = [], []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg.startswith("--"):
            key, eq, val = arg.partition("=")
            key = aliases.get(key, key[2:])
            if not eq:
                if i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                    val, i = rest[i + 1], i + 1
                else:
                    val = "true"  # a bare flag: --data.skip_bad_rows
            overrides.append(f"{key.replace('-', '_')}={val}")
        elif "=" in arg:
            overrides.append(arg)
        else:
            words.append(arg)
        i += 1
    return overrides, words


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinythinker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_, aliases) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--config", help="YAML config file; overrides on the command line win")
        p.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed data rows")
        if aliases:
            p.epilog = "aliases: " + ", ".join(f"{k} = --{v}" for k, v in aliases.items())
    args, rest = parser.parse_known_args(argv)
    target, _, aliases = COMMANDS[args.command]
    try:
        overrides, words = split_overrides(rest, aliases)
        if args.skip_bad_rows:
            overrides.append("data.skip_bad_rows=true")
        cfg = load_config(args.config or DEFAULT_CONFIG.get(args.command), overrides)
        module, func = target.split(":")
        return getattr(importlib.import_module(module), func)(cfg, words) or 0
    except TinyThinkerError as e:
        print(f"tinythinker {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # storage: an unwritable run_dir, a full disk (errno and path say which); outputs
        print(f"tinythinker {args.command}: error: {e}", file=sys.stderr)  # finished so far stay intact
        return 1


if __name__ == "__main__":
    sys.exit(main())
