"""`tinythinker` as a user runs it: the installed entry point in a subprocess, and override parsing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tinythinker_ray import cli
from tinythinker_ray.config import KEYS, is_section, load_config, presets
from tinythinker_ray.core.records import Question
from tinythinker_ray.errors import ConfigError

EXE = Path(sys.executable).with_name("tinythinker")


def tt(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env)


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
    # a bool key takes a following word only if it is a bool: else the word is a sub-word
    (["--data.skip_bad_rows", "prepare"], ["data.skip_bad_rows=true"], ["prepare"]),
    (["--data.skip_bad_rows", "false", "prepare"], ["data.skip_bad_rows=false"], ["prepare"]),
    (["--train.bf16"], ["train.bf16=true"], []),  # bool | None is a switch too
    (["--train.bf16", "0"], ["train.bf16=0"], []),
])
def test_split_overrides_forms(rest, overrides, words):
    assert cli.split_overrides(rest, {}) == (overrides, words)


def test_split_overrides_aliases():
    aliases = cli.COMMANDS["eval"].aliases
    assert cli.split_overrides(["--model", "m", "--split=test", "--samples", "5"], aliases) == (
        ["student.model=m", "eval.split=test", "eval.samples=5"], [])


@pytest.mark.parametrize("rest, flag", [
    (["--sft.lr", "--sft.max_steps", "10"], "--sft.lr"),  # the next word is another flag, not its value
    (["--teacher.samples"], "--teacher.samples"),  # trailing
    (["prepare", "--data.path"], "--data.path"),
    (["--model"], "--model"),  # an alias names itself
])
def test_a_flag_without_a_value_is_an_error_naming_it(rest, flag):
    with pytest.raises(ConfigError) as e:
        cli.split_overrides(rest, cli.COMMANDS["eval"].aliases)
    assert str(e.value) == f"{flag} needs a value ({flag} VALUE or {flag}=VALUE)"


def test_a_flag_without_a_value_exits_2_with_one_line():
    r = tt("sft", "--sft.lr", "--sft.max_steps", "10")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "tinythinker sft: error: --sft.lr needs a value (--sft.lr VALUE or --sft.lr=VALUE)\n"


def test_unknown_preset_is_one_line_listing_the_presets():
    r = tt("run", "--config", "nosuch")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("tinythinker run: error: unknown preset 'nosuch' (presets: ")
    for name in presets():
        assert name in r.stderr


def test_misspelt_key_suggests_the_nearest(capsys):
    assert cli.main(["data", "show", "--sft.lrr", "1e-4"]) == 2
    assert capsys.readouterr().err == ("tinythinker data: error: unknown config key 'sft.lrr'; did you mean "
                                       "'sft.lr'?\n")


def test_a_text_key_keeps_its_digits(capsys):
    assert cli.main(["config", "show", "--data.path", "007", "student.model=1e3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["data"]["path"], shown["student"]["model"]) == ("007", "1e3")


def test_help_lists_commands_and_version():
    r = tt("--help")
    assert r.returncode == 0
    for name in cli.COMMANDS:
        assert name in r.stdout
    r = tt("--version")
    assert r.returncode == 0 and r.stdout == f"tinythinker {metadata.version('tinythinker-ray')}\n"


def test_sft_help_lists_the_keys_it_reads_with_type_default_and_description():
    r = tt("sft", "--help")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = lines.index("  --sft.lr  float = 0.0005")
    assert lines[i + 1].strip() == KEYS["sft.lr"].description == "AdamW learning rate"
    assert "  --model = --student.model" in lines and "  --mode = --sft.mode" in lines  # aliases
    assert "sft: phase 1: three-stage SFT" in lines  # a header per section, from the config model
    assert "  --sft.mode  str = recall_analyze_summarize" in lines and "  --data.max_eval  int | null = null" in lines
    listed = {ln.split()[0][2:] for ln in lines if ln.startswith("  --") and "." in ln.split()[0]}
    assert listed == {k for k in cli.keys_read(cli.COMMANDS["sft"]) if "." in k}
    assert not any(k.startswith(("teacher.", "reflect.", "tune.", "synth.")) for k in listed)  # not read by sft


@pytest.mark.parametrize("command, words", [
    ("data", ["show", "prepare", "synth"]),
    ("models", ["list", "import smollm2-135m [DIR]", "build tiny-t5|tiny-llama [DIR]"]),
    ("ask", ["QUESTION [OPTION ...]"]),
    ("export", ["OUT"]),
    ("config", ["show", "presets"]),
])
def test_help_lists_the_words(command, words, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert out.startswith(f"usage: tinythinker {command} [{' | '.join(words)}] ")
    block = out.split("\nwords:\n")[1].split("\n\n")[0].splitlines()
    assert [ln.split("   ")[0].strip() for ln in block] == words


def test_every_command_reads_known_sections():
    for name, command in cli.COMMANDS.items():
        assert set(command.reads) <= {k for k in KEYS if "." not in k}, name
    assert cli.keys_read(cli.COMMANDS["config"]) == [k for k in KEYS if not is_section(k)]


# ----- config show | presets -----------------------------------------------------------------------------------------

def test_config_show_prints_the_merged_config_with_descriptions(tmp_path):
    r = tt("config", "show", "--config", "local-tiny", "--sft.lr", "1e-3")
    assert r.returncode == 0, r.stderr
    assert "  lr: 0.001  # AdamW learning rate" in r.stdout.splitlines()
    (tmp_path / "shown.yaml").write_text(r.stdout)
    assert load_config(tmp_path / "shown.yaml") == load_config("local-tiny", ["sft.lr=1e-3"])
    module = subprocess.run([sys.executable, "-m", "tinythinker_ray.config", "local-tiny", "sft.lr=1e-3"],
                            capture_output=True, text=True, timeout=120)
    assert module.returncode == 0 and module.stdout == r.stdout  # python -m tinythinker_ray.config is the same


def test_config_presets_lists_each_with_its_first_sentence(capsys):
    assert cli.main(["config", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(presets())
    assert all(ln.split(None, 1)[1] == what for ln, what in zip(lines, presets().values(), strict=True))


# ----- errors in the project's words ---------------------------------------------------------------------------------

def test_bad_yaml_is_one_line_with_file_line_and_column(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sft:\n  lr: [1e-4,\n  mode: x\n")
    r = tt("sft", "--config", f)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(f"tinythinker sft: error: {f}:4:1: not valid YAML: ") and "at 2:7)" in r.stderr


def test_a_closed_pipe_exits_quietly():
    """`tinythinker data show | head -1`: the reader is gone before the output is written."""
    proc = subprocess.Popen([str(EXE), "data", "show"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the command has imported anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""  # as a tool that SIGPIPE ended; no BrokenPipeError


NOT_A_MODEL = "is neither a folder nor a built-in (tiny-t5, tiny-llama, smollm2-135m)"


@pytest.mark.parametrize("argv, why", [
    (["ask", "--model", "/no/such/dir", "Q?", "a", "b"], ""),
    (["ask", "--model", "runs/none", "Q?", "a", "b"], "; as a hub name it cannot be reached: HF_HUB_OFFLINE is set"),
    (["eval", "--model", "/no/such/dir"], ""),
    (["sft", "--model", "Qwen/Qwen2.5-0.5B"], "; as a hub name it cannot be reached: HF_HUB_OFFLINE is set"),
])
def test_a_model_that_is_nowhere_is_one_line(argv, why, tmp_path):
    r = tt(*argv, f"--run_dir={tmp_path}", env=os.environ | {"HF_HUB_OFFLINE": "1"})
    model = argv[argv.index("--model") + 1]
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"tinythinker {argv[0]}: error: model '{model}' {NOT_A_MODEL}{why}\n"


def test_a_hub_name_without_a_reachable_hub_is_one_line():
    """With the network allowed (no HF_HUB_OFFLINE) but the hub unreachable: a port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"} | {"HF_ENDPOINT": endpoint}
    r = tt("ask", "--model", "Qwen/Qwen2.5-0.5B", "Q?", "a", "b", env=env)
    assert r.returncode == 2 and r.stderr == (f"tinythinker ask: error: model 'Qwen/Qwen2.5-0.5B' {NOT_A_MODEL}; as "
                                              f"a hub name it cannot be reached ({endpoint}: ConnectError)\n")


def test_a_folder_that_holds_no_model(tmp_path, capsys):
    assert cli.main(["eval", "--model", str(tmp_path), f"--run_dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err == (f"tinythinker eval: error: model folder {tmp_path} holds no config.json: "
                                       "not a Hugging Face model folder\n")
