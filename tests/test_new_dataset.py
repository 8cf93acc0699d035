"""A dataset the project has never seen: its own file format, no few-shot rationales, only a config block.

The pure parts of few-shot sourcing (which source, a teacher rationale as an example, which replies make
examples) are checked without Ray; then a quiz in a CSV layout none of the presets use goes through `teach`
(few-shots bootstrapped from the teacher), `sft` and `eval` from the CLI, in process, on a real local Ray.
The teacher is the rules teacher over a synthetic world, so the quiz's questions have a teacher that can
answer them offline.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tinythinker_ray import cli
from tinythinker_ray.config import SynthConfig, build_config, load_config
from tinythinker_ray.core.records import Question
from tinythinker_ray.data.loaders import load_benchmark, load_fewshot
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.teacher import fewshot, filters, prompt
from tinythinker_ray.teacher.asking import TeacherError
from tinythinker_ray.world import synth

Q = Question("q1", "Where do fish live?", (("A", "tree"), ("B", "water"), ("C", "desert")), "B")


def _cfg(**over) -> object:
    return build_config(over)


# ----- pure: choosing the source, examples from replies ----------------------------------------------------

def test_auto_source_prefers_a_file_then_the_datasets_own_set_then_bootstrap(tmp_path):
    assert fewshot.pick_source(_cfg(data={"name": "csqa"})) == "embedded"
    assert fewshot.pick_source(_cfg(data={"name": "arc"})) == "bootstrap"  # ARC has no hand-written set
    assert fewshot.pick_source(_cfg(data={"name": "custom", "path": str(tmp_path)})) == "bootstrap"
    (tmp_path / "fewshot_rationales.json").write_text(json.dumps(load_fewshot("csqa")[:2]))
    assert fewshot.pick_source(_cfg(data={"name": "custom", "path": str(tmp_path)})) == "file"  # beside the data
    assert fewshot.pick_source(_cfg(data={"name": "arc"}, teacher={"fewshot_path": str(tmp_path)})) == "file"
    assert fewshot.pick_source(_cfg(data={"name": "csqa"}, teacher={"fewshot_source": "bootstrap"})) == "bootstrap"
    # asked for a file where there is none: the key to set is named
    with pytest.raises(ConfigError, match="teacher.fewshot_path"):
        fewshot.choose(_cfg(data={"name": "arc"}, teacher={"fewshot_source": "file"}), None, [], tmp_path)
    shots = fewshot.choose(_cfg(data={"name": "arc"}, teacher={"fewshot_source": "embedded"}), None, [], tmp_path)
    assert shots.examples == load_fewshot("obqa") and "obqa set, borrowed for arc" in shots.describe()


def test_a_teacher_rationale_becomes_an_example_that_parses_back_to_it(tmp_path):
    reply = "Key Information: Fish need water.\nExplanations: B is correct. Because fish breathe in water.\n" \
            "A is incorrect. Because trees are dry.\nC is incorrect. Because deserts have no water."
    r = filters.parse_reply(reply, Q.labels)
    ex = fewshot.as_example(Q, r)
    assert ex["Options"] == "A. tree, B. water, C. desert" and ex["Explanations"][1].startswith("B is correct.")
    assert filters.parse_reply(prompt.reply_text(ex["Key Information"], ex["Explanations"]), Q.labels) == r
    (tmp_path / "fewshot_rationales.json").write_text(json.dumps([ex]))
    assert load_fewshot("custom", str(tmp_path)) == [ex]  # and a file written from it loads


def test_only_a_reply_that_parses_and_names_the_labelled_answer_makes_an_example():
    def line(*texts, finish="stop"):
        return {"completions": [{"text": t, "finish_reason": finish} for t in texts]}

    good = "Key Information: Fish need water.\nExplanations: B is correct. Because wet.\nA is incorrect. " \
           "Because dry.\nC is incorrect. Because sand."
    wrong = good.replace("B is correct", "B is incorrect").replace("A is incorrect", "A is correct")
    q2 = Question("q2", "Second?", Q.options, "B")
    q3 = Question("q3", "Third?", Q.options, "B")
    got = fewshot.pick_examples([Q, q2, q3], {
        "q1": [line("garbage", wrong), line(good)],  # the first good one, from a later round
        "q2": [line(wrong, wrong)],  # parses, but against the label: no example
        "q3": [line(good, finish="length")],  # cut by max_tokens: no example
    })
    assert [ex["Q"] for ex in got] == [Q.stem]


# ----- end to end: a new format through teach -> sft -> eval with a config block ----------------------------

COLUMNS = ["item", "query", "first", "second", "third", "right", "part"]


def _quiz(tmp_path: Path) -> tuple[Path, Path, dict[str, int]]:
    """A synthetic world's questions rewritten as quiz.csv: options in separate columns, the answer as its
    text, the split in a column named `part`. No few-shot rationales beside it."""
    world = tmp_path / "world"
    synth.write(SynthConfig(train=24, valid=8, test=8, entities=12, properties=8, options=3, fewshot=2), world)
    splits = load_benchmark("custom", str(world))
    quiz = tmp_path / "quiz" / "quiz.csv"
    quiz.parent.mkdir()
    counts = {}
    with open(quiz, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for part, qs in (("train", splits.train), ("dev", splits.valid), ("test", splits.test)):
            counts[part] = len(qs)
            for q in qs:
                w.writerow([q.id, q.stem, *(t for _, t in q.options), dict(q.options)[q.answer], part])
    return quiz, world / "world.json", counts


def _config(tmp_path: Path, quiz: Path, world: Path, tiny_t5: str, error_rate: float = 0.0) -> Path:
    block = {
        "run_dir": str(tmp_path / "run"),
        # the whole description of the new format:
        "data": {"name": "generic", "path": str(quiz), "max_eval": 6,
                 "adapter": {"columns": {"id": "item", "question": "query",
                                         "option_columns": ["first", "second", "third"],
                                         "answer": "right", "split": "part"},
                             "answer_type": "text"}},
        "teacher": {"backend": "rules", "model": str(world), "error_rate": error_rate, "shots": 2, "samples": 2,
                    "augment": 2, "retry_rounds": 0, "block_size": 8, "bootstrap_questions": 4},
        "student": {"model": tiny_t5, "max_new_tokens": 24},
        "sampler": {"backend": "hf", "batch_size": 8},
        "train": {"num_workers": 1, "zero_stage": 0, "eval_limit": 4, "log_every": 10},
        "sft": {"interval": 2, "lr": 3e-3, "batch_size": 4, "max_steps": 16, "eval_every": 16},
    }
    path = tmp_path / "quiz.yaml"
    path.write_text(yaml.safe_dump(block))
    return path


@pytest.mark.slow
def test_new_csv_format_runs_teach_sft_eval_with_bootstrapped_fewshots(tiny_t5, tmp_path, ray_local, capsys):
    quiz, world, counts = _quiz(tmp_path)
    config = _config(tmp_path, quiz, world, tiny_t5)
    run = tmp_path / "run"

    assert cli.main(["teach", "--config", str(config)]) == 0
    said = capsys.readouterr().out
    assert "few-shot examples: 4 examples, bootstrap: written by the teacher on 4 of 4" in said
    shots = load_fewshot("custom", str(run / "teach" / "fewshot_rationales.json"))
    train_stems = {json.loads(line)["stem"] for line in open(run / "teach" / "questions" / "train.jsonl")}
    assert len(shots) == 4 and {ex["Q"] for ex in shots} <= train_stems  # in-domain, from training questions
    system = json.loads(open(run / "teach" / "replies.jsonl").readline())["prompt"][0]["content"]
    assert shots[0]["Key Information"] in system or shots[1]["Key Information"] in system  # and they were used
    stats = json.loads((run / "teach" / "stats.json").read_text())
    assert stats["fewshot"]["source"] == "bootstrap" and stats["questions"] == counts["train"]
    assert stats["rows"]["recall"]["written"] > 0
    for split, part in (("train", "train"), ("valid", "dev"), ("test", "test")):  # the split column was honoured
        assert sum(1 for _ in open(run / "teach" / "questions" / f"{split}.jsonl")) == counts[part]

    assert cli.main(["sft", "--config", str(config)]) == 0
    best = run / "sft" / "best"
    assert (best / "config.json").exists()

    assert cli.main(["eval", "--config", str(config), "--model", str(best), "--split", "test"]) == 0
    summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
    assert summary["n"] == 6 and 0.0 <= summary["accuracy"] <= 1.0
    rows = [json.loads(line) for line in open(run / "eval" / "test" / "results.jsonl")]
    assert len(rows) == 6  # the whole chain ran on each new question: a recall, one analysis per option
    assert all(len(r["chains"][0]["analyses"]) == 3 and r["chains"][0]["recall"] is not None for r in rows)

    # a rerun reuses the bootstrapped examples: no second bootstrap, same prompt
    bootstrap_replies = (run / "teach" / "bootstrap" / "replies.jsonl").read_text()
    (run / "manifest.json").unlink()
    assert cli.main(["teach", "--config", str(config)]) == 0
    assert "reused from an earlier run" in capsys.readouterr().out
    assert (run / "teach" / "bootstrap" / "replies.jsonl").read_text() == bootstrap_replies


@pytest.mark.slow
def test_bootstrap_that_finds_no_good_example_stops_with_what_to_do(tiny_t5, tmp_path, ray_local):
    quiz, world, _ = _quiz(tmp_path)
    cfg = load_config(str(_config(tmp_path, quiz, world, tiny_t5, error_rate=1.0)))
    from tinythinker_ray.teacher.distill import teach

    with pytest.raises(TeacherError, match="no reply on 4 training questions passed the filters.*fewshot_path"):
        teach(cfg)
    assert not (tmp_path / "run" / "teach" / "fewshot_rationales.json").exists()
    assert sum(1 for _ in open(tmp_path / "run" / "teach" / "bootstrap" / "replies.jsonl")) == 4  # kept
