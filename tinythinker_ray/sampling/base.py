"""The one interface every engine implements: n completions for each of a batch of prompts.

A prompt is either plain text (student stages) or a list of chat messages (teacher); local engines apply the
tokenizer's chat template to messages. `regexes` optionally constrain each prompt's output (vLLM structured
outputs); engines that cannot constrain ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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


class Sampler(Protocol):
    def generate(self, prompts: list[Prompt], params: GenParams,
                 regexes: list[str | None] | None = None) -> list[list[Completion]]:
        """One list of `params.n` completions per prompt, in prompt order."""
        ...

    def close(self) -> None: ...
