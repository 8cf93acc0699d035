"""`tinythinker ask`: put a question to a trained student and print its whole chain.

    tinythinker ask --model runs/csqa "Where do you keep milk?" fridge oven shelf
    tinythinker ask --model runs/csqa "Is the sun a star?"            # no options: (A) yes (B) no
    tinythinker ask --model runs/csqa --samples 5 "..." a b c          # 5 sampled chains and their vote
    tinythinker ask --model runs/csqa                                  # interactive (or questions piped on stdin)

--model is an HF folder, a built-in (tiny-t5...), or a run directory: its last reflect round's best, else
sft/best (and the run's stage mode). One question runs in this process, no Ray: the chain (recall -> analyze per
option -> summarize) on vLLM for causal students, HF `generate` for T5 (as `eval` picks).
"""

from __future__ import annotations

import string
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from .config import Config
from .core import format as fmt
from .core.modes import get_mode
from .core.records import Question
from .errors import ConfigError
from .eval.chain import ChainResult, run_chain, vote
from .eval.evaluate import chain_params
from .export import best_student
from .models import resolve_model
from .rundir import RunDir
from .sampling.base import GenParams, Prompt, Sampler
from .sampling.pool import choose_backend, make_sampler
from .storage import fetch_folder, is_remote


class TimedSampler:
    """Times each `generate` call; the chain makes one per stage."""

    def __init__(self, sampler: Sampler):
        self.sampler, self.seconds = sampler, []

    def generate(self, prompts: list[Prompt], params: GenParams, regexes=None):
        start = time.perf_counter()
        out = self.sampler.generate(prompts, params, regexes)
        self.seconds.append(time.perf_counter() - start)
        return out


def student_and_mode(cfg: Config) -> tuple[str, str]:
    """The model folder to load and the stage mode it was trained for."""
    spec = cfg.student.model
    if "model" not in cfg.student.model_fields_set and "run_dir" in cfg.model_fields_set:
        spec = cfg.run_dir  # `ask --run_dir R` = the best student of run R
    if is_remote(spec):  # a run or a model in object storage: read from a fresh copy of it (no checkpoints)
        spec = str(fetch_folder(spec, skip=("ray",)))
    if not (Path(spec).is_dir() and not (Path(spec) / "config.json").exists()):
        return resolve_model(spec), cfg.sft.mode
    run = RunDir(spec)
    mode = cfg.sft.mode
    if "mode" not in cfg.sft.model_fields_set and run.config.exists():
        mode = (yaml.safe_load(run.config.read_text()) or {}).get("sft", {}).get("mode", mode)
    return str(best_student(spec)), mode


def make_question(stem: str, options: list[str], n: int = 1) -> Question:
    """Options labelled A, B, C...; none = a yes/no question. The answer is unknown ("")."""
    stem, options = stem.strip(), [o.strip() for o in options if o.strip()]
    if not stem:
        raise ConfigError("ask: the question is empty")
    if len(options) == 1:
        raise ConfigError("ask: give two or more options, or none for a yes/no question")
    if len(options) > 26:
        raise ConfigError(f"ask: at most 26 options (got {len(options)})")
    options = options or ["yes", "no"]
    return Question(f"ask-{n}", stem, tuple(zip(string.ascii_uppercase, options, strict=False)), "")


def show(q: Question, chains: list[ChainResult], seconds: list[float], mode: str) -> None:
    """The question, each chain (recall, one analysis per option, summary, answer), the vote and timings."""
    texts = dict(q.options)

    def named(label: str | None) -> str:
        return f"({label}) {texts[label]}" if label in texts else "none (the summary names no option)"

    print(f"\nQ: {q.stem}\n   {fmt.options_line(q.options)}")
    for k, c in enumerate(chains, 1):
        pad = "  " if len(chains) > 1 else ""
        if len(chains) > 1:
            print(f"chain {k}/{len(chains)}")
        if c.recall is not None:
            print(f"{pad}recall: {c.recall}")
        for label, text in c.analyses or []:
            print(f"{pad}analysis {label}: {text}")
        print(f"{pad}summary: {c.summary}")
        print(f"{pad}answer: {named(c.prediction)}")
    if len(chains) > 1:
        counts = Counter(c.prediction for c in chains)
        print(f"vote over {len(chains)} chains:")
        for label, text in q.options:
            print(f"  ({label}) {text:<30.30} {counts.get(label, 0):>3}  {'#' * counts.get(label, 0)}".rstrip())
        print(f"  {'none':<34} {counts.get(None, 0):>3}")
        print(f"answer (self-consistency): {named(vote([c.prediction for c in chains]))}")
    spent = ", ".join(f"{s} {t:.2f} s" for s, t in zip(get_mode(mode).stages, seconds, strict=False))
    print(f"time: {spent}, total {sum(seconds):.2f} s")


def _read(prompt: str) -> str:
    """One line from stdin (prompt on stderr, so piped output stays clean); '' at the end of input."""
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip()


def interactive():
    """Questions typed (or piped): a question line, then one option per line, an empty line ends the options;
    an empty question (or the end of input) ends the session."""
    while question := _read("\nquestion (empty line to quit): "):
        options = []
        while option := _read(f"option {string.ascii_uppercase[len(options)]} "
                              "(empty line when done; none = yes/no): "):
            options.append(option)
        yield question, options


def main(cfg: Config, words: list[str]) -> int:
    model_path, mode = student_and_mode(cfg)
    backend = choose_backend(cfg.sampler, model_path)
    start = time.perf_counter()
    sampler = TimedSampler(make_sampler(cfg.sampler.model_copy(update={"backend": backend, "model": model_path})))
    print(f"student: {model_path} ({backend}, mode {mode}), loaded in {time.perf_counter() - start:.1f} s")
    params = chain_params(cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"mode": mode})}))
    asked = [(words[0], words[1:])] if words else interactive()
    try:
        for n, (stem, options) in enumerate(asked, 1):
            try:
                q = make_question(stem, options, n)
            except ConfigError as e:
                if words:
                    raise
                print(e, file=sys.stderr)  # interactive: say why and ask again
                continue
            sampler.seconds = []
            chains = run_chain(sampler, [q], get_mode(mode), **params)[0]
            show(q, chains, sampler.seconds, mode)
    finally:
        sampler.sampler.close()
    return 0
