"""Benchmark loaders and splits on the real benchmark copies, custom JSONL, and every kind of bad input."""

from __future__ import annotations

import json

import pytest

from tinythinker_ray.data.loaders import load_benchmark, load_fewshot
from tinythinker_ray.data.rows import csqa_row
from tinythinker_ray.errors import DataError

SIZES = {"csqa": (8520, 1221, 1221), "obqa": (4957, 500, 500), "strategyqa": (1832, 229, 229)}


def _ids(qs):
    return [q.id for q in qs]


@pytest.mark.parametrize("name", SIZES)
def test_benchmark_split_sizes(shared_data, name):
    s = load_benchmark(name, str(shared_data / name))
    assert (len(s.train), len(s.valid), len(s.test)) == SIZES[name]
    assert s.skipped == {}
    for q in s.train[:50] + s.test[:50]:
        assert q.answer in q.labels and q.stem and all(text for _, text in q.options)


@pytest.mark.parametrize("name", ["csqa", "strategyqa"])
def test_seeded_splits_are_deterministic_and_seed_dependent(shared_data, name):
    a = load_benchmark(name, str(shared_data / name), seed=1)
    b = load_benchmark(name, str(shared_data / name), seed=1)
    c = load_benchmark(name, str(shared_data / name), seed=2)
    assert _ids(a.valid) == _ids(b.valid) and _ids(a.train) == _ids(b.train)
    assert set(_ids(a.valid)) != set(_ids(c.valid))


def test_csqa_valid_is_drawn_from_train_without_overlap(shared_data):
    s = load_benchmark("csqa", str(shared_data / "csqa"))
    train, valid, test = set(_ids(s.train)), set(_ids(s.valid)), set(_ids(s.test))
    assert not train & valid and not (train | valid) & test
    assert len(train | valid) == 9741  # the official train file, all of it


def test_obqa_keeps_the_official_files(shared_data):
    s = load_benchmark("obqa", str(shared_data / "obqa"))
    first_dev = json.loads((shared_data / "obqa" / "dev.jsonl").read_text().splitlines()[0])
    assert s.valid[0].id == first_dev["id"] and s.valid[0].answer == first_dev["answerKey"]
    assert {len(q.options) for q in s.train} == {4}


def test_strategyqa_is_yes_no(shared_data):
    s = load_benchmark("strategyqa", str(shared_data / "strategyqa"))
    assert {q.options for q in s.train + s.valid + s.test} == {(("A", "yes"), ("B", "no"))}
    answers = {q.answer for q in s.train}
    assert answers == {"A", "B"}
    raw = json.loads((shared_data / "strategyqa" / "strategyqa_train.json").read_text())
    truth = {r["qid"]: ("A" if r["answer"] else "B") for r in raw}
    assert all(truth[q.id] == q.answer for q in s.test)


@pytest.mark.parametrize("name, sizes", [("csqa", (160, 40, 40)), ("obqa", (160, 40, 40)),
                                         ("strategyqa", (160, 20, 20))])
def test_embedded_samples_load_without_a_path(name, sizes):
    s = load_benchmark(name)
    assert (len(s.train), len(s.valid), len(s.test)) == sizes


@pytest.mark.parametrize("name, n", [("csqa", 8), ("obqa", 7), ("strategyqa", 8)])
def test_fewshot(shared_data, name, n):
    shots = load_fewshot(name, str(shared_data / name))
    assert len(shots) == n and shots == load_fewshot(name)  # the embedded copy is the same
    for shot in shots:
        assert shot["Q"] and shot["Key Information"] and len(shot["Explanations"]) >= 2
    assert load_fewshot(name, str(shared_data / name / "fewshot_rationales.json")) == shots


def test_fewshot_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match="no fewshot_rationales.json"):
        load_fewshot("csqa", str(tmp_path / "nowhere"))
    f = tmp_path / "fewshot_rationales.json"
    f.write_text(json.dumps([{"Q": "q", "Options": "A. x, B. y", "Explanations": []}]))
    with pytest.raises(DataError) as e:
        load_fewshot("csqa", str(tmp_path))
    assert (e.value.file, e.value.line, e.value.field) == (str(f), 1, "Key Information")
    f.write_text("[{")
    with pytest.raises(DataError, match="not a JSON file"):
        load_fewshot("csqa", str(f))


# ----- custom CSQA-shaped JSONL ---------------------------------------------------------------------------------

def _row(i, labels="ABC", answer=None, **extra):
    return {"id": f"q{i}", "question": {"stem": f"Question {i}?",
                                       "choices": [{"label": lab, "text": f"opt {lab}{i}"} for lab in labels]},
            "answerKey": answer or labels[-1], **extra}


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("labels", ["ABC", "ABCDEF"])
def test_custom_any_number_of_options(tmp_path, labels):
    _write(tmp_path / "train.jsonl", [_row(i, labels) for i in range(5)])
    _write(tmp_path / "dev.jsonl", [_row(i, labels) for i in range(5, 7)])
    s = load_benchmark("custom", str(tmp_path))
    assert (len(s.train), len(s.valid), len(s.test)) == (5, 2, 0)
    assert s.train[0].labels == list(labels) and s.train[0].answer == labels[-1]
    assert s.train[0].options[0] == ("A", "opt A0")


def test_custom_single_file_is_the_training_file(tmp_path):
    f = _write(tmp_path / "mine.jsonl", [_row(i) for i in range(3)])
    s = load_benchmark("custom", str(f))
    assert (len(s.train), len(s.valid), len(s.test)) == (3, 0, 0)


def test_missing_path_and_unknown_name(tmp_path):
    with pytest.raises(DataError) as e:
        load_benchmark("custom", str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(e.value) and e.value.field == "data.path"
    with pytest.raises(DataError, match="train.jsonl not found"):
        load_benchmark("custom", str(tmp_path))
    with pytest.raises(DataError, match="unknown dataset 'squad'.*csqa"):
        load_benchmark("squad")


# ----- bad input -------------------------------------------------------------------------------------------------
# (what line 2 holds, the field the error must name or None, a word of the message)
_no_stem = _row(1)
del _no_stem["question"]["stem"]
_no_key = _row(1)
del _no_key["answerKey"]
BAD_ROWS = {
    "bad json": ('{"id": "q1", "question": ', None, "bad JSON"),
    "missing stem": (_no_stem, "question.stem", "missing"),
    "missing answerKey": (_no_key, "answerKey", "missing"),
    "wrong type": (_row(1) | {"answerKey": 3}, "answerKey", "expected str, got int"),
    "choices not a list": ({"question": {"stem": "s", "choices": "A B"}, "answerKey": "A"}, "question.choices",
                           "expected list"),
    "choice not an object": ({"question": {"stem": "s", "choices": ["x", "y"]}, "answerKey": "A"},
                             "question.choices[0]", "expected an object"),
    "answer not an option": (_row(1, answer="Z"), "answerKey", "'Z' is not among the options"),
    "duplicate labels": (_row(1, labels="ABA", answer="A"), "question.choices", "duplicate option labels"),
    "bad label": (_row(1, labels="Ab", answer="A"), "question.choices[1].label", "one capital letter"),
    "one option": (_row(1, labels="A"), "question.choices", "at least 2 options"),
    "empty stem": ({"question": {"stem": " ", "choices": _row(1)["question"]["choices"]}, "answerKey": "A"},
                   "question.stem", "empty"),
    "not an object": ("[1, 2]", None, "not a JSON object"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_bad_row_names_file_line_field(tmp_path, case):
    bad, field, words = BAD_ROWS[case]
    f = _write(tmp_path / "train.jsonl", [_row(0), bad if isinstance(bad, str) else json.dumps(bad), _row(2)])
    with pytest.raises(DataError) as e:
        load_benchmark("custom", str(tmp_path))
    err = e.value
    assert (err.file, err.line, err.field) == (str(f), 2, field)
    assert f"{f}:2" in str(err) and words in str(err)
    if field:
        assert f"field '{field}'" in str(err)

    s = load_benchmark("custom", str(tmp_path), skip_bad_rows=True)
    assert _ids(s.train) == ["q0", "q2"]
    assert sum(s.skipped.values()) == 1 and words in next(iter(s.skipped))


def test_non_utf8_bytes_name_their_line(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_bytes(json.dumps(_row(0)).encode() + b"\n" + b'{"id": "\xff\xfe"}\n' + json.dumps(_row(2)).encode())
    with pytest.raises(DataError, match="not UTF-8") as e:
        load_benchmark("custom", str(tmp_path))
    assert (e.value.file, e.value.line) == (str(f), 2)
    assert len(load_benchmark("custom", str(tmp_path), skip_bad_rows=True).train) == 2


def test_utf8_bom_and_line_separator_inside_strings(tmp_path):
    row = _row(0)
    row["question"]["stem"] = "A stem with \u2028 inside?"
    (tmp_path / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(row, ensure_ascii=False).encode() + b"\r\n")
    (q,) = load_benchmark("custom", str(tmp_path)).train
    assert q.stem == "A stem with \u2028 inside?"


def test_empty_file_and_all_bad(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text("\n\n")
    with pytest.raises(DataError, match="no questions in file") as e:
        load_benchmark("custom", str(tmp_path), skip_bad_rows=True)
    assert e.value.file == str(f)
    _write(f, ["{", "[]"])
    with pytest.raises(DataError, match=r"no questions in file \(2 bad rows skipped\)"):
        load_benchmark("custom", str(tmp_path), skip_bad_rows=True)


def test_skipped_rows_are_counted_by_reason(tmp_path):
    _write(tmp_path / "train.jsonl", [_row(0), _no_key, _no_key, "{", _row(4)])
    s = load_benchmark("custom", str(tmp_path), skip_bad_rows=True)
    assert len(s.train) == 2
    assert s.skipped == {"answerKey: missing": 2, "row: bad JSON: Expecting property name enclosed in double "
                                                  "quotes at column 2": 1}


def test_strategyqa_bad_rows(tmp_path):
    f = tmp_path / "strategyqa_train.json"
    rows = [{"qid": f"s{i}", "question": f"Is {i} even?", "answer": i % 2 == 0} for i in range(10)]
    rows[3]["answer"] = "yes"
    f.write_text(json.dumps(rows))
    with pytest.raises(DataError) as e:
        load_benchmark("strategyqa", str(tmp_path))
    assert (e.value.line, e.value.field) == (4, "answer") and "expected bool, got str" in str(e.value)
    s = load_benchmark("strategyqa", str(tmp_path), skip_bad_rows=True)
    assert len(s.train + s.valid + s.test) == 9 and s.skipped == {"answer: expected bool, got str": 1}
    f.write_text('[\n{"qid": 1,\n')
    with pytest.raises(DataError, match="bad JSON") as e:
        load_benchmark("strategyqa", str(tmp_path))
    assert e.value.line == 3
    f.write_text('{"qid": 1}')
    with pytest.raises(DataError, match="expected a JSON list"):
        load_benchmark("strategyqa", str(tmp_path))


def test_csqa_row_direct():
    q = csqa_row(_row(7, "ABCD", answer="B"), file="x.jsonl", line=7)
    assert (q.id, q.stem, q.answer, q.labels) == ("q7", "Question 7?", "B", ["A", "B", "C", "D"])
    no_id = _row(7)
    del no_id["id"]
    assert csqa_row(no_id, file="dir/mine.jsonl", line=7).id == "mine-7"
