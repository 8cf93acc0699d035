"""The one interface every engine implements: n completions for each of a batch of prompts.

A prompt is either plain text (student stages) or a list of chat messages (teacher); local engines apply the
tokenizer's chat template to messages. `regexes` optionally constrain each prompt's output (vLLM structured
outputs); engines that cannot constrain ignore them.

Each engine class says what it can do (the class attributes below) and checks its own settings (`check`), so
the pool, the teacher and evaluation ask the class instead of comparing backend names (backends.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..config import SamplerConfig
from ..errors import ConfigError

Prompt = str | list[dict]


@dataclass(frozen=True)
class GenParams:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    max_tokens: int = 128
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    text: str
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    meta: dict = field(default_factory=dict)


class Sampler:
    regex: ClassVar[bool] = False  # honours a per-prompt regex constraint
    causal_only: ClassVar[bool] = False  # cannot run encoder-decoder (T5) students
    # loads in about a second on CPU: runs as a Ray Data task that keeps it in the worker process, where an
    # actor pool would start a new process (importing torch and transformers) for every pass
    light: ClassVar[bool] = False
    # what `model` must name, for error messages; None: the engine loads no model (an endpoint names its own)
    model_is: ClassVar[str | None] = "a model folder or hub name"

    @classmethod
    def check(cls, cfg: SamplerConfig, section: str = "sampler") -> str | None:
        """On the driver, before any work: refuse settings this engine cannot run with, naming the key under
        `section` (teacher or sampler); return the model the replicas will load (built-ins made here once)."""
        if cls.model_is is None:
            return None
        if not cfg.model:
            raise ConfigError(f"{section}.model: the {cfg.backend} backend needs {cls.model_is}")
        return cls.resolve(cfg.model, section)

    @classmethod
    def resolve(cls, model: str, section: str = "sampler") -> str:
        """`model` as the replicas get it, checked here: built-ins, hub names and URIs as named (each node
        resolves them into its own cache; the driver's copy is made here first), a local folder as its path."""
        from ..models import for_workers

        return for_workers(model)

    @classmethod
    def build(cls, cfg: SamplerConfig, model: str | None) -> Sampler:
        """The engine for `cfg`, loading `model` (default cfg.model); each class maps the config to itself."""
        raise NotImplementedError

    def generate(self, prompts: list[Prompt], params: GenParams,
                 regexes: list[str | None] | None = None) -> list[list[Completion]]:
        """One list of `params.n` completions per prompt, in prompt order."""
        raise NotImplementedError

    def close(self) -> None:
        pass
