"""`tinythinker` as a user runs it: the installed entry point in a subprocess, and override parsing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinythinker_ray import cli
from tinythinker_ray.core.records import Question

EXE = Path(sys.executable).with_name("tinythinker")


def tt(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_data_prepare_csqa_subprocess(shared_data, tmp_path):
    r = tt("data", "prepare", "--data.name", "csqa", "--data.path", shared_data / "csqa", f"--run_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "8520 / 1221 / 1221" in r.stdout
    # the three-stage sample of the first training question
    for marker in ("--- recall input ---", "\nRecall:\n", "--- analyze input (first option) ---",
                   "\nAnalyze: For option A,\n", "--- summarize input ---", "\nSummarize:\n",
                   "--- summarize target ---", "So the answer is option "):
        assert marker in r.stdout
    written = {s: (tmp_path / "data" / f"{s}.jsonl").read_text().splitlines() for s in ("train", "valid", "test")}
    assert [len(v) for v in written.values()] == [8520, 1221, 1221]
    q = Question.from_dict(json.loads(written["test"][0]))
    assert len(q.options) == 5 and q.answer in q.labels


def test_data_show_embedded_prints_a_table(capsys):
    assert cli.main(["data", "show", "--data.name", "obqa"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("obqa (embedded sample)") and "160 / 40 / 40" in lines[0]
    assert lines[1].split() == ["split", "questions", "options", "answers"]
    assert lines[2].split()[:3] == ["train", "160", "4"] and "A " in lines[2] and "%" in lines[2]
    assert lines[3].split()[:3] == ["validation", "40", "4"]
    assert lines[4].split()[:3] == ["test", "40", "4"]


@pytest.mark.parametrize("mode, shown, hidden", [
    ("summarize", ["--- summarize input ---"], ["Recall:", "Analyze:"]),
    ("recall_summarize", ["--- recall input ---", "Recall: <recalled knowledge>."], ["Analyze:"]),
    ("analyze_summarize", ["--- analyze input (first option) ---", "Analyze: For option A, <analysis of A>."],
     ["Recall:"]),
    ("recall_analyze_summarize", ["Recall: <recalled knowledge>.\nAnalyze: For option A,",
                                  "Analyze: For option A, <analysis of A>."], []),
])
def test_data_show_prints_the_sample_as_the_mode_trains_it(mode, shown, hidden, capsys):
    assert cli.main(["data", "show", "--sft.mode", mode]) == 0
    sample = capsys.readouterr().out.split(f"--- mode {mode}: trains ", 1)[1]
    assert all(s in sample for s in shown) and not any(h in sample for h in hidden)


def test_data_show_writes_nothing(tmp_path, capsys):
    assert cli.main(["data", "show", f"--run_dir={tmp_path / 'run'}"]) == 0
    assert not (tmp_path / "run").exists()


def _custom(tmp_path, bad: str) -> Path:
    rows = [{"id": f"q{i}", "question": {"stem": f"Q{i}?", "choices": [{"label": "A", "text": "x"},
                                                                         {"label": "B", "text": "y"},
                                                                         {"label": "C", "text": "z"}]},
             "answerKey": "B"} for i in range(4)]
    lines = [json.dumps(r) for r in rows]
    lines[2] = bad
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_bad_custom_data_exits_2_naming_file_line_field(tmp_path):
    f = _custom(tmp_path, json.dumps({"id": "q2", "question": {"stem": "s", "choices": [
        {"label": "A", "text": "x"}, {"label": "B", "text": "y"}]}, "answerKey": "E"}))
    r = tt("data", "prepare", "--data.name", "custom", "--data.path", f, f"--run_dir={tmp_path / 'run'}")
    assert r.returncode == 2 and r.stdout == ""
    assert f"{f}:3" in r.stderr and "field 'answerKey'" in r.stderr and "'E' is not among the options" in r.stderr
    assert "Traceback" not in r.stderr

    r = tt("data", "prepare", "--data.name", "custom", "--data.path", tmp_path, "--skip-bad-rows",
           f"--run_dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert "3 / 0 / 0" in r.stdout and "skipped 1 bad row " in r.stdout and "answerKey" in r.stdout
    assert len((tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()) == 3


def test_bad_json_in_custom_dir_in_process(tmp_path, capsys):
    f = _custom(tmp_path, '{"id": "q2",')
    assert cli.main(["data", "show", "--data.name=custom", f"--data.path={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinythinker data: error: ") and f"{f}:3" in err and "bad JSON" in err
    assert cli.main(["data", "show", "--data.name=custom", f"--data.path={tmp_path}", "--data.skip_bad_rows"]) == 0
    assert "skipped 1 bad row " in capsys.readouterr().out


def test_unknown_config_key_exits_2():
    r = tt("data", "show", "--data.nmae", "csqa")
    assert r.returncode == 2 and "unknown config key 'data.nmae'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("argv, words", [
    (["data", "show", "--sft.mode", "foo"], ["'sft.mode'", "modes: summarize,"]),
    (["data", "show", "--config", "/nonexistent/c.yaml"], ["config file not found"]),
    (["data", "frob"], ["data frob", "prepare | show"]),
    (["data", "show", "--data.name", "squad"], ["unknown dataset 'squad'", "field 'data.name'"]),
    (["data", "show", "--data.path", "/nonexistent/data"], ["/nonexistent/data", "no such file or folder"]),
])
def test_user_errors_exit_2(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err


def test_config_file_and_cli_override(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  name: strategyqa\n  seed: 3\n")
    assert cli.main(["data", "show", "--config", str(f), "data.seed=4"]) == 0
    assert capsys.readouterr().out.startswith("strategyqa (embedded sample), split seed 4:")


@pytest.mark.parametrize("rest, overrides, words", [
    (["prepare", "--a.b=v"], ["a.b=v"], ["prepare"]),
    (["--a.b", "v", "prepare"], ["a.b=v"], ["prepare"]),
    (["a.b=v", "x", "y"], ["a.b=v"], ["x", "y"]),
    (["--data.skip_bad_rows"], ["data.skip_bad_rows=true"], []),  # a bare flag at the end
    (["--data.skip_bad_rows", "--a.b", "1"], ["data.skip_bad_rows=true", "a.b=1"], []),
    (["--data.skip-bad-rows=false"], ["data.skip_bad_rows=false"], []),  # dashes in keys become underscores
    (["--sft.lr", "-1"], ["sft.lr=-1"], []),  # a negative number is a value, not a flag
    (["--student.model", "a=b"], ["student.model=a=b"], []),
])
def test_split_overrides_forms(rest, overrides, words):
    assert cli.split_overrides(rest, {}) == (overrides, words)


def test_split_overrides_aliases():
    aliases = cli.COMMANDS["eval"][2]
    assert cli.split_overrides(["--model", "m", "--split=test", "--samples", "5"], aliases) == (
        ["student.model=m", "eval.split=test", "eval.samples=5"], [])


def test_help_lists_commands():
    r = tt("--help")
    assert r.returncode == 0
    for name in cli.COMMANDS:
        assert name in r.stdout
