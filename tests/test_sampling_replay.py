"""ReplaySampler: replies recorded from a real engine come back as they were; gaps degrade, never crash."""

from __future__ import annotations

import json

import pytest

from tinythinker_ray.errors import ConfigError, DataError
from tinythinker_ray.sampling.base import Completion, GenParams
from tinythinker_ray.sampling.replay import ReplaySampler, prompt_key, recording
from tinythinker_ray.storage import append_jsonl

CHAT = [{"role": "system", "content": "You teach."}, {"role": "user", "content": "Where do fish live?"}]


def test_round_trip_of_a_real_engine(tiny_t5, tmp_path):
    from tinythinker_ray.sampling.hf import HFSampler

    prompts = ["Where do fish live?\n(A) water (B) sky\nRecall:", "Why is the sky blue?\n(A) air (B) sea\nRecall:"]
    engine = HFSampler(tiny_t5)
    recorded = engine.generate(prompts, GenParams(n=2, temperature=1.0, max_tokens=6, seed=0))
    path = tmp_path / "replies.jsonl"
    append_jsonl(path, [recording(p, cs, qid=f"q{i}") for i, (p, cs) in enumerate(zip(prompts, recorded, strict=True))])

    replay = ReplaySampler(str(path))
    again = replay.generate(prompts, GenParams(n=2))
    assert [[(c.text, c.finish_reason) for c in cs] for cs in again] == \
        [[(c.text, c.finish_reason) for c in cs] for cs in recorded]
    assert [len(cs) for cs in replay.generate(prompts, GenParams(n=1))] == [1, 1]  # up to n
    assert replay.stats == {"served": 4, "missing": 0}


def test_chat_prompts_pool_across_lines_and_missing_prompts_are_counted(tmp_path):
    path = tmp_path / "replies.jsonl"
    append_jsonl(path, [recording(CHAT, [Completion("Key Information: water.", "stop")], round=0)])
    append_jsonl(path, [recording(list(reversed(CHAT)), [Completion("other order", "stop")]),
                        recording(CHAT, [Completion("Key Information: wet", "length")], round=1)])
    replay = ReplaySampler(str(path))
    # the key is canonical JSON: the same messages with keys in another order are the same prompt
    same = [{"content": m["content"], "role": m["role"]} for m in CHAT]
    assert prompt_key(same) == prompt_key(CHAT)
    out = replay.generate([same, "never recorded"], GenParams(n=5))
    assert [(c.text, c.finish_reason) for c in out[0]] == [("Key Information: water.", "stop"),
                                                          ("Key Information: wet", "length")]
    assert len(out[1]) == 1 and out[1][0].finish_reason == "error" and out[1][0].meta == {"missing": True}
    assert replay.stats == {"served": 1, "missing": 1}


def test_bad_files_name_file_line_and_field(tmp_path):
    with pytest.raises(ConfigError, match="sampler.model"):
        ReplaySampler(str(tmp_path / "absent.jsonl"))
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(recording("p", [Completion("x")])) + "\n" + json.dumps({"completions": []}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2, field 'prompt'"):
        ReplaySampler(str(path))
    path.write_text(json.dumps({"prompt": "p", "completions": "x"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1, field 'completions'"):
        ReplaySampler(str(path))
