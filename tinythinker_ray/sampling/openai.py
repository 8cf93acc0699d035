"""Any OpenAI-compatible chat endpoint as a Sampler (a hosted teacher, or a vLLM / llama.cpp server).

Requests run concurrently (at most `cfg.max_concurrency` in flight), each asking for the API's `n` samples; a
server that returns fewer choices is asked again for the remainder. 429 / 5xx / timeouts / dropped connections
/ malformed bodies are retried with exponential backoff and jitter (honouring Retry-After) up to
`cfg.max_retries` times, counted per reason in `self.stats`. An endpoint still failing after that raises
`EndpointError`.

The API key is read only from the environment variable named by `cfg.api_key_env`, sent only in the
Authorization header, and scrubbed from every message this module produces.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import time

import httpx

from ..config import SamplerConfig, section_of
from ..errors import ConfigError, TinyThinkerError
from .base import Completion, GenParams, Prompt, Sampler

log = logging.getLogger(__name__)
_FINISH = {"stop": "stop", "length": "length"}  # content_filter, tool_calls, ... -> "error"
MAX_BACKOFF_S = 60.0
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what `export NAME=...` accepts
MAX_RETRY_AFTER_S = 300.0  # longer Retry-After values are capped: the retry budget still bounds the wait


class EndpointError(TinyThinkerError):
    """The endpoint refused a request, or kept failing after every retry."""


class _Retry(Exception):
    def __init__(self, reason: str, detail: str, wait: float | None = None):
        super().__init__(detail)
        self.reason, self.wait = reason, wait


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):  # unparseable: fall back to our own backoff
        return None


class OpenAISampler(Sampler):
    model_is = None  # the endpoint serves its own model; `model` only names it

    @classmethod
    def check(cls, cfg: SamplerConfig, section: str | None = None) -> None:
        """Endpoint, model name and key before any work; the key's value is never printed, only its variable.
        `section` defaults to the one the user wrote the settings under, so a teacher replica's own check (in
        __init__, on any node) names teacher.*, not sampler.*."""
        section = section or section_of(cfg)
        for key, what in (("base_url", "an endpoint, e.g. https://host/v1"), ("model", "the endpoint's model name")):
            if not getattr(cfg, key):
                raise ConfigError(f"{section}.{key}: the openai backend needs {what}")
        name = cfg.api_key_env.strip()
        if not VAR_NAME.fullmatch(name):  # likely the key itself pasted in: never echo it
            raise ConfigError(f"{section}.api_key_env must be the NAME of the environment variable that holds "
                              f"the API key (e.g. OPENAI_API_KEY), not the key itself; export the key there")
        if not os.environ.get(name, "").strip():
            raise ConfigError(f"no API key for the openai backend ({section}): the environment variable {name} is "
                              f"not set or blank; export {name}=<your key>, or point --{section}.api_key_env at the "
                              f"variable that holds it")
        return None

    @classmethod
    def build(cls, cfg: SamplerConfig, model: str | None) -> OpenAISampler:
        return cls(cfg)

    def __init__(self, cfg: SamplerConfig, *, backoff_s: float = 1.0):
        self.check(cfg)
        self._key = os.environ[cfg.api_key_env.strip()].strip()
        self.cfg, self.backoff_s = cfg, backoff_s
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.stats: dict[str, int] = {"requests": 0}

    def __repr__(self) -> str:  # never the key
        return f"OpenAISampler(url={self.url!r}, model={self.cfg.model!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***")

    def generate(self, prompts: list[Prompt], params: GenParams,
                 regexes: list[str | None] | None = None) -> list[list[Completion]]:
        # `regexes` are ignored: the chat completions API has no portable regex constraint; the teacher's
        # filters reject off-format replies instead.
        return asyncio.run(self._generate(prompts, params))

    async def _generate(self, prompts: list[Prompt], params: GenParams) -> list[list[Completion]]:
        limit = asyncio.Semaphore(self.cfg.max_concurrency)
        headers = {"Authorization": f"Bearer {self._key}"}
        pool = httpx.Limits(max_connections=self.cfg.max_concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=self.cfg.timeout_s, limits=pool) as client:
            return list(await asyncio.gather(*(self._samples(client, limit, p, params) for p in prompts)))

    async def _samples(self, client, limit, prompt: Prompt, params: GenParams) -> list[Completion]:
        """All n samples of one prompt: ask for the remainder until the server has given n choices."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        out: list[Completion] = []
        while len(out) < params.n:
            body = {"model": self.cfg.model, "messages": messages, "n": params.n - len(out),
                    "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens}
            if params.seed is not None:
                body["seed"] = params.seed
            if params.stop:
                body["stop"] = list(params.stop)
            out += await self._request(client, limit, body)
        return out[: params.n]

    async def _request(self, client, limit: asyncio.Semaphore, body: dict) -> list[Completion]:
        """One request with its retries; the concurrency slot is held only while a request is in flight."""
        last, wait_s = "", 0.0
        for attempt in range(self.cfg.max_retries + 1):
            await asyncio.sleep(wait_s)
            self.stats["requests"] += 1
            try:
                async with limit:
                    resp = await client.post(self.url, json=body)
                return self._parse(resp)
            except _Retry as r:
                reason, wait, last = r.reason, r.wait, str(r)
            except httpx.TimeoutException:
                reason, wait, last = "timeout", None, f"no reply within {self.cfg.timeout_s}s"
            except httpx.TransportError as e:
                reason, wait, last = "connection", None, f"connection failed ({type(e).__name__})"
            if attempt == self.cfg.max_retries:
                break
            self.stats[reason] = self.stats.get(reason, 0) + 1  # retries, per reason
            backoff = min(MAX_BACKOFF_S, self.backoff_s * 2**attempt)
            wait_s = min(wait, MAX_RETRY_AFTER_S) if wait is not None else backoff + random.uniform(0, backoff)
            log.warning("%s: %s (attempt %d of %d, retrying in %.1fs)", self.url, self._scrub(last), attempt + 1,
                        self.cfg.max_retries + 1, wait_s)
        raise EndpointError(self._scrub(f"{self.url} still failing after {self.cfg.max_retries} retries: {last}"))

    def _parse(self, resp: httpx.Response) -> list[Completion]:
        if resp.status_code == 429 or resp.status_code >= 500:
            reason = "rate_limit" if resp.status_code == 429 else "server_error"
            raise _Retry(reason, f"HTTP {resp.status_code}", _retry_after(resp.headers.get("retry-after")))
        if resp.status_code != 200:  # 400/401/404...: retrying cannot help
            raise EndpointError(self._scrub(f"{self.url}: HTTP {resp.status_code}: {resp.text[:300]}"))
        try:
            choices = resp.json()["choices"]
            out = [Completion(text=(c["message"]["content"] or "").strip(),
                              finish_reason=_FINISH.get(c.get("finish_reason"), "error")) for c in choices]
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # ValueError: bad JSON / encoding
            raise _Retry("malformed", f"malformed reply body ({type(e).__name__})") from None
        if not out:
            raise _Retry("malformed", "reply without choices")
        return out

    def close(self) -> None:
        pass
