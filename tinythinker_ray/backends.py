"""Every sampler backend by name, and where its class lives: a new engine is one file and one line here.

The classes are imported only when used (vLLM takes seconds to import). What an engine can do (regex
constraints, encoder-decoder models, loading in a second on CPU) and which settings it needs, the class itself
declares (sampling/base.Sampler); nothing outside it compares backend names.
"""

from __future__ import annotations

import importlib

BACKENDS: dict[str, str] = {
    "vllm": "tinythinker_ray.sampling.vllm:VLLMSampler",
    "hf": "tinythinker_ray.sampling.hf:HFSampler",
    "openai": "tinythinker_ray.sampling.openai:OpenAISampler",
    "replay": "tinythinker_ray.sampling.replay:ReplaySampler",
    "rules": "tinythinker_ray.world.rules:RulesSampler",
}
# `backend: auto` (the student's sampler): the first of these that can run the model (vLLM cannot run T5)
AUTO = ("vllm", "hf")


def engine(name: str) -> type:
    """The Sampler class registered as `name` (a KeyError names the backends there are)."""
    if name not in BACKENDS:
        raise KeyError(f"unknown backend {name!r} (backends: {', '.join(BACKENDS)})")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
