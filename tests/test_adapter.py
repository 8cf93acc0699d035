"""The generic dataset adapter: presets on files in each dataset's own format (written here), every source format,
every answer type, seeded splits, config blocks, and errors that name file, row and column."""

from __future__ import annotations

import csv
import json

import pytest

from tinythinker_ray.config import AdapterConfig, load_config
from tinythinker_ray.data.adapter import load_adapted, resolve
from tinythinker_ray.data.loaders import embedded_dir, load_benchmark, load_dataset_cfg, load_fewshot
from tinythinker_ray.errors import ConfigError, DataError


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _adapter(**tree) -> AdapterConfig:
    return AdapterConfig.model_validate(tree)


# ----- presets on each dataset's distributed format ---------------------------------------------------------------

def _arc_row(i, labels="ABCD", answer=None):
    return {"id": f"Mercury_{i}", "question": {"stem": f"Which is question {i}?",
                                               "choices": [{"text": f"choice {lab}", "label": lab} for lab in labels]},
            "answerKey": answer or labels[2]}


def test_arc_preset_maps_numeric_labels_and_keeps_the_three_files(tmp_path):
    root = tmp_path / "ARC-Challenge"
    _jsonl(root / "ARC-Challenge-Train.jsonl",
           [_arc_row(0), _arc_row(1, labels="1234", answer="4"), _arc_row(2, labels="ABC", answer="A"),
            _arc_row(3, labels="ABCDE", answer="E")])
    _jsonl(root / "ARC-Challenge-Dev.jsonl", [_arc_row(10, labels="1234", answer="1")])
    _jsonl(root / "ARC-Challenge-Test.jsonl", [_arc_row(20), _arc_row(21)])
    s = load_benchmark("arc", str(root))
    assert (len(s.train), len(s.valid), len(s.test)) == (4, 1, 2)  # every split given: nothing carved
    q0, q1, q2, q3 = s.train
    assert q0.id == "Mercury_0" and q0.stem == "Which is question 0?" and q0.answer == "C"
    assert q1.options == (("A", "choice 1"), ("B", "choice 2"), ("C", "choice 3"), ("D", "choice 4"))
    assert q1.answer == "D"  # answerKey "4" -> the option labelled "4" -> D
    assert (len(q2.options), q2.answer, len(q3.options), q3.answer) == (3, "A", 5, "E")
    assert s.valid[0].answer == "A" and s.test[1].id == "Mercury_21"


def test_qasc_preset_eight_options_facts_ignored_dev_is_test(tmp_path):
    def row(i):
        r = _arc_row(i, labels="ABCDEFGH", answer="G")
        return r | {"fact1": "f1", "fact2": "f2", "combinedfact": "cf", "formatted_question": "fq"}

    _jsonl(tmp_path / "train.jsonl", [row(i) for i in range(20)])
    _jsonl(tmp_path / "dev.jsonl", [row(i) for i in range(100, 105)])
    _jsonl(tmp_path / "test.jsonl", [{k: v for k, v in row(200).items() if k != "answerKey"}])  # unlabelled
    s = load_benchmark("qasc", str(tmp_path), seed=3)
    assert (len(s.train), len(s.valid), len(s.test)) == (18, 2, 5)  # valid = 10% of train
    assert [q.id for q in s.test] == [f"Mercury_{i}" for i in range(100, 105)]
    assert all(len(q.options) == 8 and q.answer == "G" for q in s.train + s.valid + s.test)
    assert "f1" not in s.train[0].stem and "fq" not in s.train[0].stem


def test_piqa_preset_goal_two_solutions_and_labels_files(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [{"goal": f"How to do {i}?", "sol1": f"way one {i}", "sol2": f"way two {i}"}
                                      for i in range(10)])
    (tmp_path / "train-labels.lst").write_text("".join(f"{i % 2}\n" for i in range(10)))
    _jsonl(tmp_path / "valid.jsonl", [{"goal": "Open a jar?", "sol1": "twist the lid", "sol2": "freeze it"}])
    (tmp_path / "valid-labels.lst").write_text("0\n")
    s = load_benchmark("piqa", str(tmp_path))
    assert (len(s.train), len(s.valid), len(s.test)) == (9, 1, 1)
    t = s.test[0]
    assert (t.id, t.stem, t.options, t.answer) == ("test-1", "Open a jar?",
                                                   (("A", "twist the lid"), ("B", "freeze it")), "A")
    by_id = {q.id: q for q in s.train + s.valid}
    assert by_id["train-4"].answer == "B" and by_id["train-5"].answer == "A"  # line 4 -> label 1, line 5 -> 0
    assert by_id["train-4"].stem == "How to do 3?"


def test_siqa_preset_context_first_and_one_based_labels(tmp_path):
    rows = [{"context": f"Tracy went home {i}.", "question": "Why did Tracy do this?", "answerA": "tired",
             "answerB": "hungry", "answerC": "bored"} for i in range(4)]
    _jsonl(tmp_path / "train.jsonl", rows)
    (tmp_path / "train-labels.lst").write_text("1\n2\n3\n1\n")
    _jsonl(tmp_path / "dev.jsonl", rows[:1])
    (tmp_path / "dev-labels.lst").write_text("3\n")
    s = load_benchmark("siqa", str(tmp_path), seed=1)
    q = {q.id: q for q in s.train + s.valid}["train-2"]
    assert q.stem == "Tracy went home 1. Why did Tracy do this?" and q.answer == "B"
    assert q.options == (("A", "tired"), ("B", "hungry"), ("C", "bored"))
    assert s.test[0].answer == "C" and len(s.train + s.valid) == 4


def test_official_csqa_shape_through_the_adapter_equals_the_native_loader():
    native = load_benchmark("csqa")
    a = _adapter(columns={"question": "question.stem", "options": "question.choices", "answer": "answerKey"},
                 split_rule={"valid": 0, "test": 0})
    mapped = load_adapted("generic", str(embedded_dir("csqa") / "train_rand_split.jsonl"), a)
    assert sorted(mapped.train, key=lambda q: q.id) == sorted(native.train + native.valid, key=lambda q: q.id)


# ----- source formats --------------------------------------------------------------------------------------------

def test_csv_with_option_columns_and_text_answers(tmp_path):
    f = tmp_path / "mine.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["qid", "prompt", "o1", "o2", "o3", "gold"])
        w.writerows([[f"c{i}", f"Pick {i}, please", "red", "Green ", "blue", ["red", "green", "BLUE"][i % 3]]
                     for i in range(10)])
    a = _adapter(columns={"id": "qid", "question": "prompt", "option_columns": ["o1", "o2", "o3"],
                          "answer": "gold"}, answer_type="text", split_rule={"valid": 0.2, "test": 0})
    s = load_adapted("generic", str(f), a)
    assert (len(s.train), len(s.valid), len(s.test)) == (8, 2, 0)
    q = {q.id: q for q in s.train + s.valid}
    assert q["c0"].stem == "Pick 0, please" and q["c0"].options[1] == ("B", "Green")
    assert [q[f"c{i}"].answer for i in range(3)] == ["A", "B", "C"]  # text answers, case and space insensitive


def test_csv_options_as_a_json_list_cell(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text('question,choices,answer\n"Two, or three?","[""two"", ""three""]",B\n')
    s = load_adapted("generic", str(tmp_path), _adapter(split_rule={"valid": 0, "test": 0}))
    assert s.train[0].options == (("A", "two"), ("B", "three")) and s.train[0].answer == "B"
    assert s.train[0].id == "train-2"  # no id column: split + CSV line


def test_parquet_files_per_split_with_one_based_index(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split, n in (("train", 6), ("validation", 2), ("test", 3)):
        rows = [{"id": f"{split}{i}", "question": f"Q {i}?", "choices": ["a", "b", "c", "d"], "answer": i % 4 + 1}
                for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{split}.parquet")
    s = load_adapted("generic", str(tmp_path), _adapter(answer_type="index", index_base=1))
    assert (len(s.train), len(s.valid), len(s.test)) == (6, 2, 3)
    assert [q.answer for q in s.train] == ["A", "B", "C", "D", "A", "B"]


def test_hf_disk_dataset_dict_yes_no(tmp_path):
    import datasets

    def part(n, start):
        return datasets.Dataset.from_dict({"passage": [f"Text {i}." for i in range(start, start + n)],
                                           "question": [f"is it {i}" for i in range(start, start + n)],
                                           "answer": [i % 2 == 0 for i in range(start, start + n)]})

    datasets.DatasetDict({"train": part(8, 0), "validation": part(2, 8)}).save_to_disk(tmp_path / "boolq")
    a = _adapter(format="hf_disk", columns={"context": "passage", "answer": "answer"}, answer_type="yes_no")
    s = load_adapted("generic", str(tmp_path / "boolq"), a, seed=5)
    assert (len(s.train), len(s.valid), len(s.test)) == (7, 2, 1)  # test carved from train (10% of 8 -> 1)
    assert {q.options for q in s.train + s.valid + s.test} == {(("A", "yes"), ("B", "no"))}
    q = next(q for q in s.valid if q.id == "valid-1")
    assert q.stem == "Text 8. is it 8" and q.answer == "A"
    assert resolve("generic", a).fewshot == "strategyqa"  # yes/no datasets borrow StrategyQA's exemplars


def test_hf_disk_single_dataset_with_a_split_column(tmp_path):
    import datasets

    datasets.Dataset.from_dict({
        "question": ["q1", "q2", "q3", "q4"], "choices": [["x", "y"]] * 4, "answer": ["A", "B", "a", "b"],
        "part": ["train", "dev", "test", "TRAIN"]}).save_to_disk(tmp_path / "one")
    s = load_adapted("generic", str(tmp_path / "one"), _adapter(format="hf_disk", columns={"split": "part"}))
    assert [q.stem for q in s.train] == ["q1", "q4"] and [q.stem for q in s.valid] == ["q2"]
    assert [q.answer for q in s.train + s.test] == ["A", "B", "A"]


def test_hub_format_reads_a_local_data_folder(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    _jsonl(tmp_path / "ds" / "train.jsonl", [{"question": f"Q{i}", "choices": ["p", "q"], "answer": "B"}
                                             for i in range(5)])
    _jsonl(tmp_path / "ds" / "test.jsonl", [{"question": "T", "choices": ["p", "q"], "answer": "A"}])
    s = load_adapted("generic", str(tmp_path / "ds"), _adapter(format="hub", split_rule={"valid": 0.2}))
    assert (len(s.train), len(s.valid), len(s.test)) == (4, 1, 1) and s.test[0].answer == "A"


# ----- answers, splits, config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("answer_type, base, answers, want", [
    ("label", 0, ["A", "c", "B"], "ACB"),
    ("index", 0, [0, "2", 1.0], "ACB"),
    ("index", 1, [1, 3, "2"], "ACB"),
    ("text", 0, ["cat", "Eel", " dog "], "ACB"),
])
def test_answer_types(tmp_path, answer_type, base, answers, want):
    _jsonl(tmp_path / "train.jsonl", [{"id": i, "question": f"q{i}", "choices": ["cat", "dog", "eel"], "answer": a}
                                      for i, a in enumerate(answers)])
    a = _adapter(answer_type=answer_type, index_base=base, split_rule={"valid": 0, "test": 0})
    assert "".join(q.answer for q in load_adapted("generic", str(tmp_path), a).train) == want


@pytest.mark.parametrize("value, want", [(True, "A"), (False, "B"), ("Yes", "A"), ("no", "B"), (1, "A"),
                                         ("0", "B"), ("TRUE", "A")])
def test_yes_no_answers(tmp_path, value, want):
    _jsonl(tmp_path / "train.jsonl", [{"question": "Is it?", "answer": value}])
    a = _adapter(answer_type="yes_no", split_rule={"valid": 0, "test": 0})
    q = load_adapted("generic", str(tmp_path), a).train[0]
    assert q.answer == want and q.options == (("A", "yes"), ("B", "no"))


def test_split_rule_is_seeded_disjoint_and_keeps_file_order(tmp_path):
    _jsonl(tmp_path / "all.jsonl", [{"id": f"q{i}", "question": "?", "choices": ["x", "y"], "answer": "A"}
                                    for i in range(100)])
    path = str(tmp_path / "all.jsonl")

    def ids(s):
        return [[q.id for q in qs] for qs in (s.train, s.valid, s.test)]

    a = _adapter(split_rule={"valid": 0.15, "test": 0.25})
    one, same, other = (load_adapted("generic", path, a, seed=s) for s in (1, 1, 2))
    assert ids(one) == ids(same) and ids(one) != ids(other)
    train, valid, test = ids(one)
    assert (len(train), len(valid), len(test)) == (60, 15, 25)
    assert len(set(train) | set(valid) | set(test)) == 100
    assert train == sorted(train, key=lambda i: int(i[1:]))
    pinned = _adapter(split_rule={"valid": 0.15, "test": 0.25, "seed": 1})  # split_rule.seed beats data.seed
    assert ids(load_adapted("generic", path, pinned, seed=99)) == ids(one)


def test_config_block_from_yaml_and_preset_overrides(tmp_path):
    rows = [{"id": f"h{i}", "question": f"Q{i}?", "choices": {"text": ["u", "v", "w"], "label": ["1", "2", "3"]},
             "answerKey": "3"} for i in range(10)]
    _jsonl(tmp_path / "arc-hub" / "train.jsonl", rows)  # ARC as the hub ships it: flat question, dict choices
    yml = tmp_path / "c.yaml"
    yml.write_text(f"data:\n  name: arc\n  path: {tmp_path / 'arc-hub'}\n  seed: 7\n  adapter:\n"
                   "    files: {train: train.jsonl}\n    columns: {question: question, options: choices}\n"
                   "    split_rule: {valid: 0.2, test: 0.2}\n")
    cfg = load_config(yml)
    s = load_dataset_cfg(cfg.data)
    assert (len(s.train), len(s.valid), len(s.test)) == (6, 2, 2)
    assert all(q.answer == "C" and q.options[2] == ("C", "w") for q in s.train)
    a = resolve("arc", cfg.data.adapter)
    assert (a.columns.answer, a.columns.id, a.fewshot) == ("answerKey", "id", "obqa")  # kept from the preset
    with pytest.raises(ConfigError, match="unknown config key 'data.adapter.columns.qestion'"):
        load_config(overrides=["data.name=generic", "data.adapter.columns.qestion=x"])
    with pytest.raises(ConfigError, match="data.adapter.answer_type"):
        load_config(overrides=["data.adapter.answer_type=letter"])
    cli = load_config(overrides=["data.name=piqa", "data.adapter.columns.option_columns=[a, b, c]"])
    assert resolve("piqa", cli.data.adapter).columns.option_columns == ["a", "b", "c"]


def test_routing_names_and_fewshot():
    with pytest.raises(DataError, match="unknown dataset 'boolq'.*arc, qasc, piqa, siqa, generic"):
        load_benchmark("boolq", "x")
    with pytest.raises(DataError, match="data.adapter maps generic datasets and presets") as e:
        load_benchmark("csqa", adapter=_adapter())
    assert e.value.field == "data.adapter"
    with pytest.raises(DataError, match="no embedded sample") as e:
        load_benchmark("arc")
    assert e.value.field == "data.path"
    assert load_fewshot("arc") == load_fewshot("obqa") and load_fewshot("siqa") == load_fewshot("csqa")
    assert load_fewshot("generic", adapter=_adapter(answer_type="yes_no")) == load_fewshot("strategyqa")


# ----- errors name file, row and column ---------------------------------------------------------------------------

GOOD = {"id": "g", "question": "Fine?", "choices": ["x", "y", "z"], "answer": "A"}
BAD = {  # line 2 of train.jsonl -> (field the error names, a word of the message)
    "missing question": ({k: v for k, v in GOOD.items() if k != "question"}, "question", "missing or empty"),
    "empty question": (GOOD | {"question": "  "}, "question", "empty"),
    "question not text": (GOOD | {"question": ["a"]}, "question", "expected text"),
    "options not a list": (GOOD | {"choices": 3}, "choices", "expected a list"),
    "one option": (GOOD | {"choices": ["x"]}, "choices", "needs 2 to 26 options"),
    "empty option": (GOOD | {"choices": ["x", ""]}, "choices[1]", "empty"),
    "unlabelled option": (GOOD | {"choices": [{"label": "A", "text": "x"}, {"text": "y"}]}, "choices",
                          "option labels must be given"),
    "answer not a label": (GOOD | {"answer": "Q"}, "answer", "not among the option labels"),
    "missing answer": ({k: v for k, v in GOOD.items() if k != "answer"}, "answer", "missing or empty"),
    "duplicate id": (GOOD, "id", "duplicate id 'g'"),
    "bad json": ('{"question": ', None, "bad JSON"),
    "not an object": ("[1, 2]", None, "not an object"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_jsonl_rows_name_file_line_and_column(tmp_path, case):
    row, field, word = BAD[case]
    f = _jsonl(tmp_path / "train.jsonl", [GOOD, row, GOOD | {"id": "h"}])
    with pytest.raises(DataError) as e:
        load_adapted("generic", str(tmp_path), None)
    assert (e.value.file, e.value.line, e.value.field) == (str(f), 2, field)
    assert word in str(e.value) and f"{f}:2" in str(e.value)
    s = load_adapted("generic", str(tmp_path), None, skip_bad_rows=True)  # or: skipped and counted
    assert sum(s.skipped.values()) == 1 and len(s.train + s.valid + s.test) == 2


@pytest.mark.parametrize("answer_type, base, value, word", [
    ("index", 0, 3, r"out of range for 3 options \(0-based\)"), ("index", 1, 0, "out of range"),
    ("index", 0, "two", "is not an index"), ("index", 0, True, "is not an index"),
    ("text", 0, "fish", "not the text of any option"), ("yes_no", 0, "maybe", "not yes/no"),
])
def test_bad_answers_name_the_answer_column(tmp_path, answer_type, base, value, word):
    f = _jsonl(tmp_path / "train.jsonl", [GOOD | {"answer": value}])
    a = _adapter(answer_type=answer_type, index_base=base)
    with pytest.raises(DataError, match=word) as e:
        load_adapted("generic", str(f), a)
    assert (e.value.file, e.value.line, e.value.field) == (str(f), 1, "answer")


def test_csv_error_names_the_line_and_column(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text("question,a,b,answer\nfine?,x,y,1\nbroken?,x,,1\n")
    a = _adapter(columns={"option_columns": ["a", "b"]}, answer_type="index")
    with pytest.raises(DataError) as e:
        load_adapted("generic", str(f), a)
    assert (e.value.file, e.value.line, e.value.field) == (str(f), 3, "b")


def test_parquet_and_hf_disk_errors_name_the_row(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": "ok", "choices": ["x", "y"], "answer": "A"}, {"question": "bad", "choices": ["x", "y"],
                                                                       "answer": "C"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    with pytest.raises(DataError) as e:
        load_adapted("generic", str(tmp_path / "d.parquet"), None)
    assert (e.value.file, e.value.line, e.value.field) == (str(tmp_path / "d.parquet"), 2, "answer")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(tmp_path / "hf")
    with pytest.raises(DataError) as e:
        load_adapted("generic", str(tmp_path / "hf"), _adapter(format="hf_disk"))
    assert (e.value.file, e.value.line, e.value.field) == (f"{tmp_path / 'hf'}[train]", 2, "answer")
    with pytest.raises(DataError, match="load_from_disk failed") as e:
        load_adapted("generic", str(tmp_path / "nope"), _adapter(format="hf_disk"))
    assert e.value.field == "data.path"
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file") as e:
        load_adapted("generic", str(tmp_path / "junk.parquet"), None)
    assert e.value.file == str(tmp_path / "junk.parquet")


def test_labels_file_errors_name_the_labels_file(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [{"goal": f"g{i}", "sol1": "a", "sol2": "b"} for i in range(3)])
    labels = tmp_path / "train-labels.lst"
    labels.write_text("0\n7\n1\n")
    with pytest.raises(DataError, match="out of range for 2 options") as e:
        load_benchmark("piqa", str(tmp_path))
    assert (e.value.file, e.value.line) == (str(labels), 2)
    labels.write_text("0\n1\n")
    with pytest.raises(DataError, match="no answer for row 3") as e:
        load_benchmark("piqa", str(tmp_path))
    assert (e.value.file, e.value.line) == (str(labels), 3)
    labels.write_text("0\n1\n1\n0\n")
    with pytest.raises(DataError, match="4 answers for 3 rows") as e:
        load_benchmark("piqa", str(tmp_path))
    assert e.value.file == str(labels)


def test_missing_files_and_formats(tmp_path):
    with pytest.raises(DataError, match="no such file or folder") as e:
        load_adapted("generic", str(tmp_path / "none"), None)
    assert e.value.field == "data.path"
    with pytest.raises(DataError, match="no training file"):
        load_adapted("generic", str(tmp_path), None)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="cannot tell the format") as e:
        load_adapted("generic", str(tmp_path / "x.txt"), None)
    assert e.value.field == "data.adapter.format"
    with pytest.raises(DataError, match="'\\*-Train.jsonl' must match one file, matched nothing") as e:
        load_benchmark("arc", str(tmp_path))
    assert e.value.field == "data.adapter.files"
