"""The sampler registry (backends.py): engines declare what they can do, and a new engine is one class plus one
registry line (no Ray here: the chain runs in this process)."""

from __future__ import annotations

import pytest

from tinythinker_ray.backends import BACKENDS, engine
from tinythinker_ray.config import SamplerConfig, TeacherConfig, load_config
from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.modes import MODES
from tinythinker_ray.core.records import Question
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.eval.chain import accuracy, run_chain
from tinythinker_ray.sampling.base import Completion, Sampler
from tinythinker_ray.sampling.pool import choose_backend, make_sampler

Q = Question("q1", "Which one is a toy?", (("A", "a kite"), ("B", "a rock")), "A")


class EchoSampler(Sampler):
    """A toy engine: knows every stage's answer for "which one is a toy" questions, loads no model."""

    light = True
    model_is = None

    @classmethod
    def build(cls, cfg: SamplerConfig, model: str | None) -> EchoSampler:
        return cls()

    def generate(self, prompts, params, regexes=None):
        def reply(p: str) -> str:
            stage = fmt.parse_stage_input(p)["stage"]
            return {"recall": "A kite is a toy.", "analyze": "it is what the question asks.",
                    "summarize": fmt.summarize_target("A")}[stage]

        return [[Completion(reply(p)) for _ in range(params.n)] for p in prompts]


def test_a_new_engine_is_one_registry_line(monkeypatch):
    monkeypatch.setitem(BACKENDS, "echo", f"{__name__}:EchoSampler")
    cfg = load_config(None, ["sampler.backend=echo"])  # config validation reads the registry
    assert engine("echo") is EchoSampler and choose_backend(cfg.sampler, None) == "echo"
    sampler = make_sampler(cfg.sampler)
    results = run_chain(sampler, [Q], MODES["recall_analyze_summarize"])
    assert accuracy(results)["accuracy"] == 1.0 and results[0][0].recall == "A kite is a toy."
    with pytest.raises(ConfigError, match="unknown backend; backends: auto, vllm, hf, openai, replay, rules, echo"):
        load_config(None, ["sampler.backend=ech0"])


def test_engines_say_what_they_can_do():
    assert engine("vllm").regex and engine("vllm").causal_only and not engine("vllm").light
    assert not engine("hf").regex and not engine("hf").causal_only and engine("hf").light
    assert engine("openai").model_is is None and engine("rules").light and engine("replay").light


def test_each_engine_checks_its_own_settings_naming_the_users_key(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    openai = TeacherConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model="m", api_key_env="NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="environment variable NO_SUCH_KEY.*export NO_SUCH_KEY=.*--teacher.api_key_env"):
        engine("openai").check(openai, "teacher")
    with pytest.raises(ConfigError, match="teacher.base_url"):
        engine("openai").check(TeacherConfig(backend="openai", model="m"), "teacher")
    with pytest.raises(ConfigError, match="sampler.model: .*nothing.jsonl not found"):
        engine("replay").check(SamplerConfig(backend="replay", model=str(tmp_path / "nothing.jsonl")))
    with pytest.raises(ConfigError, match="teacher.model: the vllm backend needs a model folder"):
        engine("vllm").check(TeacherConfig(backend="vllm"), "teacher")
