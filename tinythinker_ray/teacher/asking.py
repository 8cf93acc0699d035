"""Asking the teacher through the sampler pool, with every finished block of replies appended to a file.

    sample_block   the task each sampler replica runs: rows of questions -> replies.jsonl lines
    sample_round   one round of questions through `map_with_sampler`, appended to a Replies file as it comes
    Replies        a replies file (teach/replies.jsonl, teach/bootstrap/replies.jsonl) indexed by question

`teach` (distill.py) and few-shot bootstrapping (fewshot.py) both ask through here, so both resume the same way.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

from .. import console
from ..backends import engine
from ..config import Config
from ..core.records import Question
from ..errors import DataError, TinyThinkerError
from ..sampling.base import GenParams, Sampler
from ..sampling.replay import recording
from ..storage import append_jsonl
from . import filters, prompt

SEED_STRIDE = 10_000  # per-round seed offset: vLLM seeds the n samples of a request seed..seed+n-1


class TeacherError(TinyThinkerError):
    """Sampling stopped (an endpoint that kept failing, a crashed engine); what was done is on disk."""


# ----- the task each sampler replica runs ------------------------------------------------------------

def sample_block(sampler: Sampler, rows: list[dict], *, system: str, round: int, temperature: float,
                 seed: int, line_chars: int | None, verdicts: bool = False) -> list[dict]:
    """Ray Data rows {qid, question (JSON), n, max_tokens} -> {qid, reply (JSON of one replies.jsonl line)}.

    Questions asking for the same (n, max_tokens) go to the engine in one `generate` call; `line_chars` set
    means constrained decoding (one regex per question; `verdicts`: the regex writes them too)."""
    questions = [Question.from_dict(json.loads(r["question"])) for r in rows]
    by_ask: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_ask[(int(r["n"]), int(r["max_tokens"]))].append(i)
    out: list[dict] = [{}] * len(rows)
    for (n, max_tokens), idx in by_ask.items():
        chats = [prompt.messages(questions[i], system) for i in idx]
        regexes = [prompt.constraint_regex(questions[i], line_chars, verdicts) for i in idx] if line_chars else None
        params = GenParams(n=n, temperature=temperature, max_tokens=max_tokens,
                           seed=seed + SEED_STRIDE * round)
        for j, (i, completions) in enumerate(zip(idx, sampler.generate(chats, params, regexes), strict=True)):
            line = recording(chats[j], completions, qid=questions[i].id, round=round,
                             regex=regexes[j] if regexes else None, n=n, max_tokens=max_tokens)
            out[i] = {"qid": questions[i].id, "reply": json.dumps(line, ensure_ascii=False)}
    return out


# ----- replies.jsonl: append per block, read back per question ------------------------------------------

class Replies:
    """teach/replies.jsonl with an index qid -> [(round, byte offset)]: a question's replies are read back by
    seeking, so nothing but the index is held in memory."""

    def __init__(self, path: Path):
        self.path = path
        self.index: dict[str, list[tuple[int, int]]] = defaultdict(list)
        if path.exists():
            self._cut_torn_tail()
            self._scan(0)

    def _cut_torn_tail(self) -> None:
        """A run killed mid-append leaves a last line without its newline: drop it, or the next append would
        glue a good line onto it."""
        with open(self.path, "rb+") as f:
            data_end = f.seek(0, os.SEEK_END)
            if data_end == 0:
                return
            f.seek(data_end - 1)
            if f.read(1) == b"\n":
                return
            pos = data_end
            while pos > 0:
                step = min(1 << 16, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    f.truncate(pos - step + nl + 1)
                    return
                pos -= step
            f.truncate(0)

    def _scan(self, start: int) -> None:
        with open(self.path, "rb") as f:
            f.seek(start)
            offset, lineno = start, 0
            for raw in iter(f.readline, b""):
                lineno += 1
                try:
                    row = json.loads(raw)
                    self.index[str(row["qid"])].append((int(row["round"]), offset))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise DataError("not a replies line (qid, round, completions)", file=str(self.path),
                                    line=lineno if start == 0 else None) from None
                offset += len(raw)

    def has(self, qid: str, round: int) -> bool:
        return any(r == round for r, _ in self.index.get(qid, ()))

    def append(self, lines: list[dict]) -> None:
        start = self.path.stat().st_size if self.path.exists() else 0
        append_jsonl(self.path, lines)
        self._scan(start)

    def first(self) -> dict | None:
        if not self.index:
            return None
        with open(self.path, "rb") as f:
            return json.loads(f.readline())

    def lines(self, qid: str) -> list[dict]:
        """Every stored line of one question, in round order."""
        out = []
        with open(self.path, "rb") as f:
            for _, offset in sorted(self.index.get(qid, ())):
                f.seek(offset)
                out.append(json.loads(f.readline()))
        return out


# ----- one round through the pool ----------------------------------------------------------------------

def root_cause(err: BaseException) -> str:
    """The replica's own error line ("EndpointError: ... still failing ...") out of Ray's wrapping, which
    keeps the original only as traceback text ahead of "The above exception was the direct cause..."."""
    first = str(err).split("The above exception was the direct cause")[0]
    lines = [ln.strip() for ln in first.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def sample_round(cfg: Config, model: str | None, system: str, questions: dict[str, Question],
                  asks: dict[str, filters.Ask], round: int, replies: Replies, what: str = "teach") -> None:
    """Ask the teacher for one round's questions; append each finished block to `replies` as it comes."""
    import ray.data

    from ..raylib import ensure_ray
    from ..sampling.pool import map_with_sampler

    ensure_ray(cfg)
    t = cfg.teacher
    rows = [{"qid": qid, "question": json.dumps(questions[qid].to_dict()), "n": a.n,
             "max_tokens": a.max_tokens} for qid, a in asks.items()]
    constrained = t.constrained and engine(t.backend).regex  # engines that cannot constrain get no regex
    task = partial(sample_block, system=system, round=round, temperature=t.temperature, seed=t.seed,
                   line_chars=t.line_chars if constrained else None, verdicts=t.constrain_verdicts)
    ctx = ray.data.DataContext.get_current()
    bars, ctx.enable_progress_bars = ctx.enable_progress_bars, False  # our own bar counts questions
    done = samples = 0
    t0 = time.time()
    bar = console.progress(total=len(rows), desc=f"{what} round {round}", unit="q")
    try:
        result = map_with_sampler(ray.data.from_items(rows), t, task, model=model, batch_size=t.block_size)
        for batch in result.iter_batches(batch_size=None, batch_format="numpy"):
            lines = [json.loads(s) for s in batch["reply"]]
            replies.append(lines)
            done += len(lines)
            samples += sum(len(ln["completions"]) for ln in lines)
            bar.update(len(lines))
            bar.set_postfix(samples_per_s=f"{samples / max(time.time() - t0, 1e-9):.1f}")
    except Exception as e:  # Ray wraps whatever the replicas raised (EndpointError, engine crashes, ...)
        raise TeacherError(f"teacher sampling failed in round {round}: {root_cause(e)}; {done} of "
                           f"{len(rows)} questions of this round are saved in {replies.path}: rerun the same "
                           "command to resume") from e
    finally:
        bar.close()
        ctx.enable_progress_bars = bars
