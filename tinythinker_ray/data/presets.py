"""Built-in dataset mappings for the generic adapter, as `data.adapter` blocks.

`data.name` picks one; fields set in `data.adapter` replace the preset's. CommonsenseQA, OpenBookQA and
StrategyQA keep their own loaders (loaders.py: the paper's splits); these cover the next formats users ask for,
as their authors distribute them:

  arc   ARC-Easy / ARC-Challenge JSONL: {"id", "question": {"stem", "choices": [{"text", "label"}]}, "answerKey"};
        labels "1"-"4" in some rows become A-D. data.path = the ARC-Easy or ARC-Challenge folder.
  qasc  QASC_Dataset/{train,dev,test}.jsonl, same shape with 8 options (fact1/fact2 are not read). The official
        test file has no answers: dev is the test split and validation is carved from train.
  piqa  {"goal", "sol1", "sol2"} per line + train-labels.lst (0/1 per line); valid.jsonl is the test split.
  siqa  Social IQa: {"context", "question", "answerA/B/C"} + train-labels.lst (1-3); dev is the test split.

The same datasets from the hub (`data.adapter.format: hub`) have flat columns; override the columns, e.g. for
allenai/ai2_arc: `columns: {question: question, options: choices}`, `subset: ARC-Challenge`.
"""

from __future__ import annotations

# Defaults under every preset (and all of `data.name: generic`).
GENERIC: dict = {
    "columns": {"id": "id", "question": "question", "options": "choices", "answer": "answer"},
    "answer_type": "label",
    "index_base": 0,
    "split_rule": {"valid": 0.1, "test": 0.1},
    "fewshot": "csqa",  # yes/no datasets default to strategyqa's exemplars (see adapter.resolve)
}

_ARC_COLUMNS = {"id": "id", "question": "question.stem", "options": "question.choices", "answer": "answerKey"}

PRESETS: dict[str, dict] = {
    "arc": {
        "format": "jsonl",
        "files": {"train": "*-Train.jsonl", "valid": "*-Dev.jsonl", "test": "*-Test.jsonl"},
        "columns": _ARC_COLUMNS,
        "fewshot": "obqa",  # grade-school science, like OpenBookQA
    },
    "qasc": {
        "format": "jsonl",
        "files": {"train": "train.jsonl", "test": "dev.jsonl"},
        "columns": _ARC_COLUMNS,
        "fewshot": "obqa",
    },
    "piqa": {
        "format": "jsonl",
        "files": {"train": "train.jsonl", "test": "valid.jsonl"},
        "label_files": {"train": "train-labels.lst", "test": "valid-labels.lst"},
        "columns": {"question": "goal", "option_columns": ["sol1", "sol2"], "answer": "label"},
        "answer_type": "index",
        "index_base": 0,
    },
    "siqa": {
        "format": "jsonl",
        "files": {"train": "train.jsonl", "test": "dev.jsonl"},
        "label_files": {"train": "train-labels.lst", "test": "dev-labels.lst"},
        "columns": {"context": "context", "question": "question",
                    "option_columns": ["answerA", "answerB", "answerC"], "answer": "label"},
        "answer_type": "index",
        "index_base": 1,
    },
}
