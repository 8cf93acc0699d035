"""Shared fixtures: the benchmark copies, tiny real students built offline, and one local Ray per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"benchmark copies not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """Tiny models are built once per session into a private cache (no hub, no home-folder state)."""
    os.environ["TINYTHINKER_CACHE"] = str(tmp_path_factory.mktemp("tt_cache"))
    yield


@pytest.fixture(scope="session")
def tiny_t5(_model_cache) -> str:
    from tinythinker_ray.models import resolve_model

    return resolve_model("tiny-t5")


@pytest.fixture(scope="session")
def tiny_llama(_model_cache) -> str:
    from tinythinker_ray.models import resolve_model

    return resolve_model("tiny-llama")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray (never attaches to a `ray start` cluster). 4 logical CPUs on 2 cores: trials fit."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false",
                                           "HF_HUB_OFFLINE": "1",
                                           "TINYTHINKER_CACHE": os.environ["TINYTHINKER_CACHE"]}})
    yield ray
    ray.shutdown()


@pytest.fixture
def csqa_questions():
    from tinythinker_ray.data.loaders import load_benchmark

    return load_benchmark("csqa").train
