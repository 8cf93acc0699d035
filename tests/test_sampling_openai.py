"""OpenAISampler against a real local HTTP server that misbehaves on a script, then answers."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tinythinker_ray.config import SamplerConfig
from tinythinker_ray.errors import ConfigError, TinyThinkerError
from tinythinker_ray.sampling.base import GenParams
from tinythinker_ray.sampling.openai import EndpointError, OpenAISampler

KEY_ENV = "TT_TEST_OPENAI_KEY"
KEY = "sk-test-0123456789-SECRET"
SLOW_S, TIMEOUT_S = 1.5, 0.5
MAX_CHOICES = 2  # the server never returns more than this per request: the client must ask for the rest


class Endpoint:
    """A chat-completions server: pops one behaviour per request from `script`, then answers OK."""

    def __init__(self):
        self.script: list[str] = []
        self.seen: list[dict] = []  # {"auth", "body", "t"} per request
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.seen.append({"auth": self.headers.get("Authorization"), "body": body,
                                          "t": time.monotonic(), "path": self.path})
                    step = endpoint.script.pop(0) if endpoint.script else "ok"
                try:
                    endpoint.answer(self, step, body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up on a slow reply
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def send(handler, status: int, payload: str, headers: dict | None = None):
        data = payload.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def answer(self, handler, step: str, body: dict):
        if step.startswith("429"):
            retry_after = step.partition(":")[2] or "0"
            return self.send(handler, 429, '{"error": "slow down"}', {"Retry-After": retry_after})
        if step in ("500", "503"):
            return self.send(handler, int(step), '{"error": "oops"}')
        if step == "401":  # like real APIs, echo (part of) the key back in the error
            return self.send(handler, 401, json.dumps({"error": f"bad key {handler.headers['Authorization']}"}))
        if step == "malformed":
            return self.send(handler, 200, '{"choices": [{"message": ')
        if step == "slow":
            time.sleep(SLOW_S)
        prompt = body["messages"][-1]["content"]
        finish = "length" if body["max_tokens"] < 5 else "stop"
        choices = [{"index": i, "message": {"role": "assistant", "content": f" {prompt} #{i} "},
                    "finish_reason": finish} for i in range(min(body["n"], MAX_CHOICES))]
        self.send(handler, 200, json.dumps({"choices": choices}))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def make(url: str, **kw) -> OpenAISampler:
    cfg = SamplerConfig(backend="openai", base_url=url, model="teacher-x", api_key_env=KEY_ENV,
                        timeout_s=TIMEOUT_S, max_concurrency=4, **kw)
    return OpenAISampler(cfg, backoff_s=0.01)


def test_retries_every_failure_kind_and_completes(endpoint, key, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint.script = ["429", "500", "malformed", "slow"]
    sampler = make(endpoint.url, max_retries=6)
    prompts = ["first?", [{"role": "system", "content": "be brief"}, {"role": "user", "content": "second?"}],
               "third?"]
    out = sampler.generate(prompts, GenParams(n=3, temperature=0.7, max_tokens=32))
    assert [len(cs) for cs in out] == [3, 3, 3]
    for cs, word in zip(out, ["first?", "second?", "third?"], strict=True):
        assert all(c.text.startswith(word) and c.finish_reason == "stop" for c in cs)
    # 3 prompts x (2 + 1 choices) = 6 good replies, plus one retry per scripted failure
    assert sampler.stats == {"requests": 10, "rate_limit": 1, "server_error": 1, "malformed": 1, "timeout": 1}
    bodies = [s["body"] for s in endpoint.seen]
    assert sorted(b["n"] for b in bodies if b["messages"][-1]["content"] == "third?")[-1] == 3
    assert {b["model"] for b in bodies} == {"teacher-x"} and {s["path"] for s in endpoint.seen} == {
        "/v1/chat/completions"}
    sent = [[{"role": "user", "content": "first?"}], prompts[1], [{"role": "user", "content": "third?"}]]
    assert {json.dumps(b["messages"]) for b in bodies} == {json.dumps(m) for m in sent}  # text -> one user turn
    # the key is sent, and nowhere else
    assert {s["auth"] for s in endpoint.seen} == {f"Bearer {KEY}"}
    assert "attempt" in caplog.text  # the retries were logged...
    assert KEY not in caplog.text and KEY not in repr(sampler) and KEY not in repr(out)  # ...without the key


def test_length_finish_reason_and_retry_after(endpoint, key):
    endpoint.script = ["429:1"]
    sampler = make(endpoint.url, max_retries=2)
    start = time.monotonic()
    out = sampler.generate(["hi"], GenParams(n=1, max_tokens=4))
    assert out[0][0].finish_reason == "length"
    assert endpoint.seen[1]["t"] - endpoint.seen[0]["t"] >= 1.0  # waited as told, not the 0.01 s backoff
    assert time.monotonic() - start < 5


def test_endpoint_down_for_good_raises_a_clear_error(key, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sampler = make(f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(EndpointError, match="still failing after 2 retries: connection failed") as err:
        sampler.generate(["hi"], GenParams())
    assert isinstance(err.value, TinyThinkerError)
    assert sampler.stats["connection"] == 2 and sampler.stats["requests"] == 3
    assert KEY not in str(err.value) and KEY not in caplog.text


def test_server_errors_for_good_and_refusals(endpoint, key):
    endpoint.script = ["503"] * 3
    with pytest.raises(EndpointError, match="HTTP 503"):
        make(endpoint.url, max_retries=2).generate(["hi"], GenParams())
    endpoint.script = ["401"]
    sampler = make(endpoint.url, max_retries=5)
    with pytest.raises(EndpointError, match="HTTP 401") as err:
        sampler.generate(["hi"], GenParams())
    assert sampler.stats == {"requests": 1}  # a refusal is not retried
    assert KEY not in str(err.value) and "***" in str(err.value)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_missing_key_names_the_variable(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(ConfigError, match=KEY_ENV):
        make("http://127.0.0.1:9/v1")


def test_config_needs_url_and_model(key):
    with pytest.raises(ConfigError, match="sampler.base_url"):
        OpenAISampler(SamplerConfig(backend="openai", model="m", api_key_env=KEY_ENV))
    with pytest.raises(ConfigError, match="sampler.model"):
        OpenAISampler(SamplerConfig(backend="openai", base_url="http://x/v1", api_key_env=KEY_ENV))


def test_retry_after_forms():
    from tinythinker_ray.sampling.openai import _retry_after

    assert _retry_after("2") == 2.0 and _retry_after("-3") == 0.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now
    assert _retry_after("soon") is None and _retry_after(None) is None  # unparseable: our own backoff
