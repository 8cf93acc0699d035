"""Bad input at every door a user's file or word comes in: a table of defects per reader, then random rows
(hypothesis) that may only ever end in our own error types.

The benchmark and adapter loaders have their own defect tables (test_loaders.py, test_adapter.py) and config
files theirs (test_config.py); here: the run-directory readers (saved questions, stage datasets, replayed
replies, few-shot rationales, JSONL in general), config overrides, huge rows, and the property tests over all
loaders and parsers.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinythinker_ray.config import AdapterConfig, load_config
from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.modes import FULL, MODES
from tinythinker_ray.data.adapter import load_adapted
from tinythinker_ray.data.loaders import load_benchmark, load_fewshot, read_questions
from tinythinker_ray.data.rows import csqa_row
from tinythinker_ray.errors import ConfigError, DataError
from tinythinker_ray.sampling.replay import ReplaySampler
from tinythinker_ray.storage import read_jsonl
from tinythinker_ray.teacher import filters
from tinythinker_ray.teacher.asking import Replies
from tinythinker_ray.train.sft import read_stage

QUESTION = {"id": "q1", "stem": "Where do fish live?", "options": [["A", "sea"], ["B", "sky"]], "answer": "A"}
STAGE = {"input": fmt.recall_input(csqa_row({"question": {"stem": "Where?", "choices": [
    {"label": "A", "text": "sea"}, {"label": "B", "text": "sky"}]}, "answerKey": "A"})), "target": "Water."}
REPLY = {"prompt": [{"role": "user", "content": "hi"}], "completions": [{"text": "x", "finish_reason": "stop"}]}


def _write(path: Path, lines: list[bytes | str | dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join((ln if isinstance(ln, bytes) else
                               (ln if isinstance(ln, str) else json.dumps(ln)).encode()) + b"\n" for ln in lines))
    return path


# ----- the run-directory readers: each defect on line 2 is named with its file and line ------------------------

READERS = {  # name: (file name, a good row, read(path), field a wrong-typed row is named by or None)
    "saved questions": ("questions/train.jsonl", QUESTION, read_questions, None),  # names no field: the row is one
    "stage dataset": ("teach/recall.jsonl", STAGE, lambda p: read_stage(p, MODES[FULL]), "target"),
    "replayed replies": ("replies.jsonl", REPLY, lambda p: ReplaySampler(str(p)), "completions"),
}
DEFECTS = {  # name: (line 2 as written, does the reader name a field for it)
    "malformed JSON": ('{"id": "q2", ', False),
    "non-UTF-8 bytes": (b'{"id": "\xff\xfe"}', False),
    "not an object": ("[1, 2, 3]", False),
    "wrong type": ("WRONG_TYPE", True),
}


@pytest.mark.parametrize("defect", DEFECTS)
@pytest.mark.parametrize("reader", READERS)
def test_run_dir_readers_name_file_and_line(tmp_path, reader, defect):
    name, good, read, field = READERS[reader]
    line, names_field = DEFECTS[defect]
    if line == "WRONG_TYPE":  # the reader's own key with a value of the wrong type
        key = field or "options"
        line = json.dumps(good | {key: 7})
    path = _write(tmp_path / name, [good, line, good])
    with pytest.raises(DataError) as e:
        read(path)
    assert (e.value.file, e.value.line) == (str(path), 2), str(e.value)
    assert f"{path}:2" in str(e.value)
    if names_field and field:
        assert e.value.field == field and f"field '{field}'" in str(e.value)


@pytest.mark.parametrize("reader", READERS)
def test_run_dir_readers_on_empty_files(tmp_path, reader):
    name, _, read, _ = READERS[reader]
    path = _write(tmp_path / name, [])
    if reader == "stage dataset":  # a stage dataset must hold rows
        with pytest.raises(DataError, match="empty") as e:
            read(path)
        assert e.value.file == str(path)
    else:  # nothing saved yet / nothing recorded: an empty result, not a crash
        read(path)


def test_a_torn_last_line_is_a_killed_writer_not_an_error(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(json.dumps(QUESTION).encode() + b'\n{"id": "q2", "st\xc3')  # cut inside a UTF-8 character
    assert [r["id"] for r in read_jsonl(path)] == ["q1"]
    with pytest.raises(DataError) as e:
        list(read_jsonl(path, tolerate_torn_tail=False))
    assert (e.value.file, e.value.line) == (str(path), 2)


def test_fewshot_file_defects_name_the_example_and_key(tmp_path):
    f = tmp_path / "fewshot_rationales.json"
    good = {"Q": "q", "Options": "A. x, B. y", "Key Information": "k", "Explanations": ["A is correct. Because x"]}
    for content, line, field, word in [
        (json.dumps([good, {k: v for k, v in good.items() if k != "Q"}]), 2, "Q", "missing"),
        (json.dumps([good, good | {"Explanations": "A is correct"}]), 2, "Explanations", "expected list"),
        (json.dumps({"Q": "q"}), None, None, "expected a JSON list"),
        ('[{"Q": ', None, None, "not a JSON file"),
        ("", None, None, "not a JSON file"),
    ]:
        f.write_text(content)
        with pytest.raises(DataError, match=word) as e:
            load_fewshot("custom", str(tmp_path))
        assert (e.value.file, e.value.line, e.value.field) == (str(f), line, field)
    f.write_bytes(b"[\xff]")
    with pytest.raises(DataError, match="not a JSON file"):
        load_fewshot("custom", str(f))


# ----- config: files and overrides name the key ------------------------------------------------------------------

@pytest.mark.parametrize("overrides, words", [
    (["sft.lr=[1, "], "sft.lr"),  # not a YAML value
    (["sft.lr=fast"], "sft.lr"),
    (["sft.no_such_key=1"], "unknown config key 'sft.no_such_key'"),
    (["sft.lr.deeper=1"], "sft.lr"),
    (["=3"], "not of the form"),
    (["teacher.backend=gpt"], "teacher.backend"),
])
def test_overrides_name_their_key(overrides, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, overrides)


def test_config_file_with_non_utf8_bytes_or_a_list_names_the_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_bytes(b"sft:\n  lr: \xff\n")
    with pytest.raises(ConfigError, match="run.yaml"):
        load_config(f)
    f.write_text("- sft\n- lr\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(f)


# ----- huge rows ---------------------------------------------------------------------------------------------------

def _csqa(i: int, stem: str | None = None, answer: str = "A") -> dict:
    return {"id": f"q{i}", "question": {"stem": stem or f"Question {i}?", "choices": [
        {"label": lab, "text": f"option {lab}"} for lab in "ABC"]}, "answerKey": answer}


def test_a_huge_row_loads_and_a_huge_bad_row_is_named(tmp_path):
    huge = "why " * 500_000  # 2 MB on one line: valid data is loaded whatever its size (tokenizers truncate)
    f = _write(tmp_path / "train.jsonl", [_csqa(0), _csqa(1, huge), _csqa(2)])
    assert [q.id for q in load_benchmark("custom", str(tmp_path)).train] == ["q0", "q1", "q2"]
    _write(f, [_csqa(0), _csqa(1, huge, answer="Z"), _csqa(2)])
    with pytest.raises(DataError) as e:
        load_benchmark("custom", str(tmp_path))
    assert (e.value.line, e.value.field) == (2, "answerKey") and len(str(e.value)) < 500  # not 2 MB of message
    assert len(load_benchmark("custom", str(tmp_path), skip_bad_rows=True).train) == 2


# ----- property tests: random rows never crash a loader or parser with anything but our errors -----------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
LABEL = st.sampled_from(list("ABCDE") + ["", "a", "AB", "1"])


@st.composite
def csqa_like(draw):
    """Rows near the CSQA shape (most of them wrong somewhere), plus arbitrary JSON and raw bytes."""
    kind = draw(st.sampled_from(["near", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    if kind == "json":
        return json.dumps(draw(JSON))
    choices = draw(st.lists(st.fixed_dictionaries({"label": LABEL | JSON, "text": st.text(max_size=6) | JSON}),
                            max_size=5))
    row = {"id": draw(st.text(max_size=4) | JSON), "question": {"stem": draw(st.text(max_size=10) | JSON),
                                                                 "choices": choices},
           "answerKey": draw(LABEL | JSON)}
    drop = draw(st.sampled_from([None, "id", "question", "answerKey"]))
    if drop:
        del row[drop]
    return json.dumps(row)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(rows=st.lists(csqa_like(), min_size=0, max_size=6), skip=st.booleans())
def test_custom_loader_property(rows, skip):
    with tempfile.TemporaryDirectory() as d:
        _write(Path(d) / "train.jsonl", rows)
        try:
            s = load_benchmark("custom", d, skip_bad_rows=skip)
        except DataError as e:
            assert e.file and str(Path(d)) in e.file
            return
        lines = sum(1 for r in rows if (r if isinstance(r, bytes) else r.encode()).strip())
        assert len(s.train + s.valid + s.test) + sum(s.skipped.values()) == lines  # every row: kept or counted


@SETTINGS
@given(rows=st.lists(st.dictionaries(st.sampled_from(["id", "question", "choices", "answer", "split", "x"]),
                                     JSON, max_size=5) | st.just(0), max_size=5),
       answer_type=st.sampled_from(["label", "index", "text", "yes_no"]), skip=st.booleans())
def test_generic_adapter_property(rows, answer_type, skip):
    with tempfile.TemporaryDirectory() as d:
        _write(Path(d) / "train.jsonl", [json.dumps(r) for r in rows])
        try:
            load_adapted("generic", d, AdapterConfig(answer_type=answer_type), skip_bad_rows=skip)
        except (DataError, ConfigError):
            pass


PIECES = st.sampled_from([b"[1]", b"{}", b"null", b'"x"', b"\xff", b"\n", b'{"input": 3, "target": "t"}',
                           b'{"qid": "q", "round": 0}', b'{"prompt": 1, "completions": [{}]}', b"\xef\xbb\xbf"])


@SETTINGS
@given(pieces=st.lists(PIECES | st.binary(max_size=12), max_size=12))
def test_jsonl_readers_property(pieces):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rows.jsonl"
        path.write_bytes(b"".join(pieces))
        for read in (lambda: list(read_jsonl(path)), lambda: read_questions(path), lambda: read_stage(path, MODES[FULL]),
                     lambda: ReplaySampler(str(path)), lambda: Replies(path)):
            try:
                read()
            except DataError as e:
                assert e.file == str(path)


@SETTINGS
@given(text=st.text(max_size=300), with_yaml=st.booleans(), overrides=st.lists(st.text(max_size=20), max_size=3))
def test_config_property(text, with_yaml, overrides):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "c.yaml"
        f.write_text(text if with_yaml else "")
        try:
            load_config(f, overrides)
        except ConfigError:
            pass


REPLY_WORDS = st.sampled_from(["Key Information:", "Explanations:", "A is correct. Because", "B is incorrect.",
                               "Because", "\n", " ", "C", "is correct", "x"])


@SETTINGS
@given(parts=st.lists(REPLY_WORDS | st.text(max_size=10), max_size=20),
       labels=st.lists(st.sampled_from(list(string.ascii_uppercase[:5])), min_size=1, max_size=5, unique=True),
       finish=st.sampled_from(["stop", "length", "error"]))
def test_teacher_reply_parser_property(parts, labels, finish):
    got = filters.parse_reply("".join(parts), labels, finish)
    if isinstance(got, str):
        assert got in filters.DROP_REASONS
    else:  # a rationale covers exactly the question's options, one of them correct
        assert [lab for lab, _ in got.explanations] == labels and got.answer in labels


STAGE_WORDS = st.sampled_from(["\n", "(A) ", "(B) ", fmt.RECALL, fmt.ANALYZE, fmt.SUMMARIZE, " For option A,",
                               "For option B, ", "So the answer is option ", "C."])


@SETTINGS
@given(parts=st.lists(STAGE_WORDS | st.text(max_size=8), max_size=16))
def test_format_parsers_property(parts):
    text = "".join(parts)
    fmt.extract_answer(text)
    fmt.split_analyses(text)
    for parse in (fmt.parse_stage_input, fmt.parse_options_line):
        try:
            parse(text)
        except ValueError:  # their documented refusal; every caller turns it into a DataError (sft.num_options)
            pass
