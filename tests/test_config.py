"""The config tree: paper defaults, YAML + overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from tinythinker_ray.config import (
    KEYS,
    Config,
    commented_yaml,
    dump_config,
    load_config,
    parse_override,
    presets,
    with_overrides,
)
from tinythinker_ray.errors import ConfigError


def test_defaults_follow_the_paper():
    c = Config()
    assert (c.sft.lr, c.sft.scheduler, c.sft.warmup, c.sft.interval) == (5e-4, "cosine", 0.1, 100)
    assert c.sft.mode == "recall_analyze_summarize"
    assert (c.reflect.lr, c.reflect.alpha, c.reflect.iterations, c.reflect.samples, c.reflect.temperature) == \
        (5e-6, 0.5, 5, 10, 0.7)
    assert (c.student.max_length, c.student.max_new_tokens) == (None, 200)  # no cut in training, 200 generated
    assert (c.sft.batch_size, c.sft.epochs, c.reflect.batch_size, c.train.eval_limit) == (64, 10, 32, None)
    assert (c.teacher.samples, c.teacher.augment, c.teacher.retry_rounds, c.teacher.reask) == (8, 8, 2, "unusable")
    assert (c.teacher.temperature, c.teacher.max_tokens, c.teacher.diversity_threshold) == (0.8, 256, 10)
    assert (c.reflect.beta, c.reflect.batch_size, c.reflect.cycles, c.reflect.mode) == (0.5, 32, 10, "recall_analyze")
    assert load_config() == c


@pytest.mark.parametrize("name, shots, samples, augment, retry_rounds", [
    ("csqa", 8, 8, 8, 2), ("obqa", 7, 4, 4, 2), ("strategyqa", 8, 4, 4, 1), ("arc", 8, 8, 8, 2)])
def test_naming_a_dataset_gives_the_authors_teacher_settings_unless_set(name, shots, samples, augment, retry_rounds):
    t = load_config(None, [f"data.name={name}"]).teacher
    assert (t.shots, t.samples, t.augment, t.retry_rounds) == (shots, samples, augment, retry_rounds)
    t = load_config(None, [f"data.name={name}", "teacher.samples=3", "teacher.augment=2"]).teacher
    assert (t.shots, t.samples, t.augment) == (shots, 3, 2)  # what the config sets wins


@pytest.mark.parametrize("item, expected", [
    ("sft.lr=1e-4", ("sft.lr", "1e-4")),  # YAML 1.1 reads 1e-4 as a string; pydantic makes it a float below
    ("sft.lr=0.001", ("sft.lr", 0.001)),
    ("data.path=null", ("data.path", None)),
    ("data.skip_bad_rows=true", ("data.skip_bad_rows", True)),
    ("--eval.limit=7", ("eval.limit", 7)),
    ("data.path=", ("data.path", "")),
    ("student.model=a=b", ("student.model", "a=b")),  # only the first '=' splits
    # a text key keeps the value as written: YAML would read 007 as 7, 1e3 as a string, yes as true
    ("data.path=007", ("data.path", "007")),
    ("student.model=1e3", ("student.model", "1e3")),
    ("run_dir=yes", ("run_dir", "yes")),
    ("sft.mode=null", ("sft.mode", "null")),  # not optional: 'null' is just a (wrong) mode name
    ("sft.scheduler=linear", ("sft.scheduler", "linear")),
    ("data.adapter.index_base=1", ("data.adapter.index_base", 1)),  # a choice among numbers: a number
    ("data.adapter.columns.option_columns=[a, b]", ("data.adapter.columns.option_columns", ["a", "b"])),
])
def test_parse_override(item, expected):
    assert parse_override(item) == expected


def test_parse_override_rejects_missing_equals():
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("sft.lr")


def test_yaml_then_overrides_later_wins(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("run_dir: runs/x\nsft:\n  lr: 1.0e-3\n  mode: summarize\ndata:\n  name: obqa\n")
    c = load_config(f, ["sft.lr=1e-4", "sft.lr=2e-4", "data.path=2024", "train.bf16=null", "eval.limit=5"])
    assert (c.run_dir, c.sft.mode, c.data.name) == ("runs/x", "summarize", "obqa")
    assert c.sft.lr == 2e-4 and isinstance(c.sft.lr, float)
    assert c.data.path == "2024"  # a folder named with digits stays a string
    assert c.train.bf16 is None and c.eval.limit == 5


def test_empty_yaml_is_defaults(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert load_config(f) == Config()


@pytest.mark.parametrize("override, words", [
    ("data.nmae=csqa", ["unknown config key 'data.nmae'"]),
    ("sftt.lr=1", ["unknown config key 'sftt'"]),
    ("teacher.samples=3.5", ["'teacher.samples'", "integer"]),
    ("sft.lr=fast", ["'sft.lr'", "number", "'fast'"]),
    ("train.use_gpu=maybe", ["'train.use_gpu'", "boolean"]),
    ("sft.mode=foo", ["'sft.mode'", "summarize, recall_summarize", "recall_analyze_summarize", "'foo'"]),
    ("reflect.mode=all", ["'reflect.mode'", "'recall_analyze'"]),
    ("teacher.backend=tgi", ["'teacher.backend'", "vllm", "openai", "'tgi'"]),
    ("sft.warmup=2", ["sft.warmup must be <= 1, got 2"]),
    ("reflect.samples=0", ["reflect.samples must be >= 1, got 0"]),
    ("sft=3", ["'sft'"]),
    # a misspelt key names the nearest ones: in its own section, else anywhere in the tree
    ("sft.lrr=1", ["unknown config key 'sft.lrr'; did you mean 'sft.lr'?"]),
    ("sftt.lr=1", ["unknown config key 'sftt'; did you mean 'sft'?"]),
    ("data.adapter.colums.id=x", ["did you mean 'data.adapter.columns'?"]),
    ("sft.temperature=1", ["did you mean 'teacher.temperature', 'reflect.temperature' or 'eval.temperature'?"]),
])
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    for w in words:
        assert w in str(e.value)


def test_several_errors_are_all_reported():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["sft.lr=x", "data.bogus=1"])
    assert "'sft.lr'" in str(e.value) and "'data.bogus'" in str(e.value)


def test_overriding_inside_a_scalar(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sft:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="'sft.lr.x': 'lr' is not a section"):
        load_config(f, ["sft.lr.x=1"])


@pytest.mark.parametrize("text, words", [
    # one line: file, line and column, what is wrong, and where the unclosed thing began
    ("sft: [unclosed", r"c.yaml:1:15: not valid YAML: expected ',' or '\]', but got '<stream end>' "
                       r"\(while parsing a flow sequence at 1:6\)$"),
    ("sft:\n\tlr: 1\n", r"c.yaml:2:1: not valid YAML: found character '\\t' that cannot start any token"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("sft:\n  lrr: 1\n", "unknown config key 'sft.lrr'"),
])
def test_bad_files(tmp_path, text, words):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(f)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope.yaml \(presets: csqa-t5-base, "):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)  # a folder


def test_dump_load_round_trip(tmp_path):
    c = load_config(None, ["sft.lr=3e-4", "data.path=/x/y", "teacher.model=m", "tune.space=s.yaml",
                           "train.bf16=true", "eval.limit=9"])
    f = tmp_path / "dump.yaml"
    f.write_text(dump_config(c))
    assert load_config(f) == c
    assert load_config(None, None) != c


def test_with_overrides_validates_and_copies():
    c = Config()
    d = with_overrides(c, {"sft.lr": 1e-5, "reflect.iterations": 2})
    assert (d.sft.lr, d.reflect.iterations) == (1e-5, 2) and c.sft.lr == 5e-4
    with pytest.raises(ConfigError, match="unknown config key 'sft.bogus'"):
        with_overrides(c, {"sft.bogus": 1})
    with pytest.raises(ConfigError, match="reflect.iterations must be >= 1, got 0"):
        with_overrides(c, {"reflect.iterations": 0})


def test_assignment_is_validated():
    c = Config()
    with pytest.raises(ValueError):
        c.sft.lr = -1.0


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError) as e:
        load_config("nosuch")
    assert str(e.value) == (f"unknown preset 'nosuch' (presets: {', '.join(presets())}; or the path of a YAML "
                            "file)")
    assert set(presets()) == {"csqa-t5-base", "local-tiny", "obqa-qwen-0.5b", "strategyqa-smollm2"}


def test_presets_are_described_by_their_first_sentence():
    described = presets()
    assert described["local-tiny"].startswith("A CPU laptop") and described["local-tiny"].endswith("sample.")
    # a sentence that wraps onto a second comment line is joined, and stops at its period
    assert described["strategyqa-smollm2"].endswith("as the teacher on vLLM (tensor parallel 2).")


def test_every_key_has_a_description():
    missing = [k for k, f in KEYS.items() if not (f.description or "").strip()]
    assert not missing and len(KEYS) > 150
    assert "\n" not in "".join(f.description for f in KEYS.values())  # one line each, as --help prints them


@pytest.mark.parametrize("preset", [None, "local-tiny", "obqa-qwen-0.5b"])
def test_commented_yaml_loads_back_and_describes_every_key(preset, tmp_path):
    cfg = load_config(preset, ["data.path=007", "data.adapter.format=csv", "sft.lr=5e-6"])
    text = commented_yaml(cfg)
    (tmp_path / "shown.yaml").write_text(text)
    assert load_config(tmp_path / "shown.yaml") == cfg  # what `config show` prints is a config file
    assert "  path: '007'  # " in text and "  lr: 5.0e-06  # AdamW learning rate" in text
    lines = text.splitlines()
    for key, field in KEYS.items():
        name = key.rsplit(".", 1)[-1]
        indent = "  " * key.count(".")
        assert any(ln.startswith(f"{indent}{name}:") and ln.endswith(f"  # {field.description}")
                   for ln in lines), key
