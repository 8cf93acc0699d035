"""Recorded replies as a Sampler: re-run a stage (or a test) on replies an engine gave before, with no engine.

File format (JSONL, one line per answered prompt; the teacher appends exactly this to run_dir/teach/replies.jsonl):

    {"prompt": "<text>" | [{"role": ..., "content": ...}, ...],
     "completions": [{"text": "...", "finish_reason": "stop" | "length" | "error"}, ...],
     ...any other keys (qid, round, ...) are kept by the writer and ignored here}

A prompt is looked up by `prompt_key(prompt)` (its canonical JSON). Several lines for one prompt (retry rounds)
pool their completions, in file order. A prompt with no recording gets one empty completion with
finish_reason "error" and meta {"missing": True}, counted in `stats["missing"]`: a partial recording degrades a
run, it does not stop it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import SamplerConfig
from ..errors import ConfigError, DataError
from ..storage import read_jsonl
from .base import Completion, GenParams, Prompt, Sampler


def prompt_key(prompt: Prompt) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def recording(prompt: Prompt, completions: list[Completion], **extra) -> dict:
    """One line of the replies file (writers use this so the replay format has one definition)."""
    return {"prompt": prompt, "completions": [{"text": c.text, "finish_reason": c.finish_reason}
                                              for c in completions], **extra}


class ReplaySampler(Sampler):
    light = True
    model_is = "a replies file to replay (a replies.jsonl you already paid for)"

    @classmethod
    def resolve(cls, model: str, section: str = "sampler") -> str:
        if not Path(model).is_file():
            raise ConfigError(f"{section}.model: {model} not found (the replay backend needs {cls.model_is})")
        cls(model)  # a bad line is named now, before any work, not in a replica
        return model

    @classmethod
    def build(cls, cfg: SamplerConfig, model: str | None) -> ReplaySampler:
        return cls(model or cfg.model)

    def __init__(self, path: str | None):
        if not path or not Path(path).is_file():
            raise ConfigError(f"sampler.model: the replay backend needs a recorded replies file (got {path!r})")
        self.path = str(path)
        self.replies: dict[str, list[Completion]] = {}
        for line, row in enumerate(read_jsonl(path), 1):
            if not isinstance(row, dict) or "prompt" not in row:
                raise DataError("missing", file=self.path, line=line, field="prompt")
            comps = row.get("completions")
            if not isinstance(comps, list) or not all(isinstance(c, dict) and "text" in c for c in comps):
                raise DataError("expected a list of {text, finish_reason}", file=self.path, line=line,
                                field="completions")
            self.replies.setdefault(prompt_key(row["prompt"]), []).extend(
                Completion(text=c["text"], finish_reason=c.get("finish_reason", "stop")) for c in comps)
        self.stats = {"served": 0, "missing": 0}

    def generate(self, prompts: list[Prompt], params: GenParams,
                 regexes: list[str | None] | None = None) -> list[list[Completion]]:
        # `regexes` are ignored: the recording already is what the engine produced under them.
        out = []
        for p in prompts:
            recorded = self.replies.get(prompt_key(p))
            if recorded:
                self.stats["served"] += 1
                out.append([Completion(c.text, c.finish_reason) for c in recorded[: params.n]])
            else:
                self.stats["missing"] += 1
                out.append([Completion(text="", finish_reason="error", meta={"missing": True})])
        return out

    def close(self) -> None:
        self.replies = {}
