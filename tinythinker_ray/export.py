"""`tinythinker export --run_dir R [OUT]`: the run's best student as a clean HF folder with a model card.

The best student is the last reflect round's best checkpoint, else phase 1's (sft/best). OUT (default
R/export) gets the model, its tokenizer and a generation_config, re-saved by transformers (no optimizer or
trainer state), and a README.md model card built from the run directory only: data, teacher and method
settings (config.yaml), accuracy per evaluation (eval/*/summary.json) and per reflect round
(reflect/iter_*/record.json), the three-stage prompt format and how to use it. Written to a temporary folder
and renamed into place; a previous export at OUT is replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from .config import Config
from .core.modes import FULL, get_mode, mode_sample
from .core.records import Question
from .errors import ConfigError
from .reflect.pairs import paired_stages
from .report import _rounds, _table
from .rundir import RunDir
from .storage import atomic_dir, atomic_write_text, cache_root, copy_tree, fetch_folder, is_remote

EXAMPLE = Question("example", "Where do you keep milk?", (("A", "fridge"), ("B", "oven"), ("C", "shelf")), "A")


def best_student(run_dir: str | os.PathLike) -> Path:
    """The last reflect round's best/ (rounds that trained nothing have none), else sft/best."""
    run = RunDir(run_dir)
    if (best := run.best_student()) is None:
        raise ConfigError(f"{run.uri}: no trained student (no reflect round nor phase 1 saved a best model); "
                          "train one with `tinythinker sft` / `tinythinker run`, or give --run_dir")
    return best


def _setting(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _pct(v) -> str:
    return f"{v:.1%}" if isinstance(v, (int, float)) else "-"


# Snippets name a placeholder, not the folder this export went to: the card travels with the model (to the hub).
PLACEHOLDER = "path/to/model"
USAGE_SEQ2SEQ = """\
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("{out}")
model = AutoModelForSeq2SeqLM.from_pretrained("{out}")

def gen(prompt):
    ids = tok(prompt, return_tensors="pt")
    return tok.decode(model.generate(**ids)[0], skip_special_tokens=True).strip()
"""
USAGE_CAUSAL = """\
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("{out}")
model = AutoModelForCausalLM.from_pretrained("{out}")

def gen(prompt):
    ids = tok(prompt, return_tensors="pt")
    new = model.generate(**ids)[0][ids["input_ids"].shape[1]:]
    return tok.decode(new, skip_special_tokens=True).strip()
"""
USAGE_CHAIN = """
def dot(text):  # the chain closes every recall and analysis with a period
    return text if text.endswith((".", '"', "'")) else text + "."

q = "Where do you keep milk?\\n(A) fridge (B) oven (C) shelf"
recall = dot(gen(q + "\\nRecall:"))
analyses = " ".join(f"For option {x}, " + dot(gen(f"{q}\\nRecall: {recall}\\nAnalyze: For option {x},"))
                    for x in "ABC")
print(gen(f"{q}\\nRecall: {recall}\\nAnalyze: {analyses}\\nSummarize:"))  # "So the answer is option A."
"""

# Base students whose hub name and license are known: the built-in converted from SmolLM2 and the presets'
# students. A randomly initialised built-in (tiny-t5, tiny-llama) has no base; its weights are this project's (MIT).
BASES = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
LICENSES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0", "HuggingFaceTB/SmolLM2-360M-Instruct": "apache-2.0",
            "google-t5/t5-base": "apache-2.0", "Qwen/Qwen2.5-0.5B-Instruct": "apache-2.0",
            "tiny-t5": "mit", "tiny-llama": "mit"}
SPLITS = {"valid": "validation", "test": "test", "train": "train"}


def base_model(spec: str | None) -> str | None:
    """The student's hub name, if it started from one: never a local path, which means nothing elsewhere."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from .models import BUILTINS

    spec = BASES.get(spec, spec)
    if not spec or spec in BUILTINS or Path(spec).exists():  # random-init built-ins, local folders: no hub base
        return None
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return None
    return spec


def dataset_id(settings: dict) -> str | None:
    """The training data's hub dataset id, where there is one."""
    from .data.loaders import HUB_NAMES

    name = _setting(settings, "data.name")
    if _setting(settings, "data.adapter.format") == "hub":
        return _setting(settings, "data.path")
    return HUB_NAMES.get(name)


def _evaluates(summary: dict, source: Path, run: Path) -> bool:
    """Whether an evaluation was of the exported checkpoint (its path may be another mirror of the run)."""
    rel = source.relative_to(run).parts if source.is_relative_to(run) else source.parts
    return Path(str(summary.get("model", ""))).parts[-len(rel):] == rel


def eval_results(run: Path, source: Path, settings: dict) -> list:
    """The exported checkpoint's evaluations as the hub's model-index entries: accuracy, and the
    self-consistency vote when a question got several chains."""
    from huggingface_hub import EvalResult

    name = _setting(settings, "data.name") or "multiple-choice"
    results = []
    for path in (ev.summary for ev in RunDir(run).evals() if ev.summary.exists()):
        summary = json.loads(path.read_text())
        if not _evaluates(summary, source, run) or not isinstance(summary.get("accuracy"), (int, float)):
            continue
        common = {"task_type": "multiple-choice", "task_name": "Multiple Choice",
                  "dataset_type": dataset_id(settings) or name, "dataset_name": name,
                  "dataset_split": SPLITS.get(path.parent.name.split("-")[0], path.parent.name),
                  "metric_type": "accuracy"}
        results.append(EvalResult(**common, metric_value=summary["accuracy"],
                                  metric_name=f"accuracy ({path.parent.name})"))
        if (summary.get("samples") or 1) > 1 and isinstance(summary.get("sc_accuracy"), (int, float)):
            results.append(EvalResult(**common, metric_value=summary["sc_accuracy"],
                                      metric_name=f"self-consistency accuracy, {summary['samples']} chains "
                                                  f"({path.parent.name})"))
    return results


def card_data(run: Path, source: Path, settings: dict, *, seq2seq: bool):
    """The card's metadata, in huggingface_hub's own types (so the hub reads it as it writes it)."""
    from huggingface_hub import ModelCardData

    spec = _setting(settings, "student.model")
    base = base_model(spec)
    license_ = LICENSES.get(base or spec)
    data = dataset_id(settings)
    results = eval_results(run, source, settings)
    return ModelCardData(
        library_name="transformers", pipeline_tag="text2text-generation" if seq2seq else "text-generation",
        license=license_ or "other", license_name=None if license_ else "see-base-model-and-data",
        base_model=base, datasets=[data] if data else None, metrics=["accuracy"] if results else None,
        tags=["tinythinker", "reasoning", "multiple-choice", "distillation"],
        model_name=f"TinyThinker student for {_setting(settings, 'data.name') or 'multiple-choice'}",
        eval_results=results or None)


def model_card(run: Path, source: Path, settings: dict, *, seq2seq: bool, arch: str) -> str:
    """README.md of the export: huggingface_hub metadata and a body built from the run directory only, nothing
    from the environment."""
    from huggingface_hub import ModelCard

    def rows(keys: list[tuple[str, str]]) -> str:
        # str(): the report's tables round floats to 3 places, which would print a 5e-6 learning rate as 0.000
        return _table(["setting", "value"], [[label, str(_setting(settings, key))] for label, key in keys
                                             if _setting(settings, key) is not None])

    data = card_data(run, source, settings, seq2seq=seq2seq)
    name = _setting(settings, "data.name") or "a multiple-choice benchmark"
    parts = [
        f"# TinyThinker student for {name}\n",
        f"A {arch} trained with the TinyThinker method (NAACL 2025) by tinythinker-ray: a teacher LLM's "
        "rationales become Recall / Analyze / Summarize training rows (phase 1: three-stage SFT), then the "
        "student learns from preference pairs of its own generations (phase 2: iterative DPO + NLL). "
        f"Exported from the run's `{source.relative_to(run) if source.is_relative_to(run) else source.name}`.\n",
        ("" if data.license != "other" else "License: the base model's and the training data's terms apply "
         "(and the teacher's, for its rationales).\n"),
        "## Data\n", rows([("dataset", "data.name"), ("path", "data.path"), ("split seed", "data.seed"),
                           ("max training questions", "data.max_train")]),
        "\n## Teacher\n", rows([("backend", "teacher.backend"), ("model", "teacher.model"),
                               ("few-shot examples", "teacher.shots"), ("samples per question", "teacher.samples"),
                               ("temperature", "teacher.temperature"), ("rationales kept", "teacher.augment")]),
        "\n## Method\n", rows([("base student", "student.model"), ("max length", "student.max_length"),
                              ("phase 1 stages", "sft.mode"), ("phase 1 lr", "sft.lr"),
                              ("phase 1 scheduler", "sft.scheduler"), ("phase 1 epochs", "sft.epochs"),
                              ("phase 1 max steps", "sft.max_steps"), ("phase 1 batch size", "sft.batch_size"),
                              ("phase 1 interval", "sft.interval"), ("phase 2 rounds", "reflect.iterations"),
                              ("phase 2 stages", "reflect.mode"), ("phase 2 samples", "reflect.samples"),
                              ("phase 2 temperature", "reflect.temperature"), ("DPO beta", "reflect.beta"),
                              ("NLL alpha", "reflect.alpha"), ("phase 2 lr", "reflect.lr"),
                              ("training workers", "train.num_workers"), ("ZeRO stage", "train.zero_stage")]),
    ]
    evals = []
    for ev in RunDir(run).evals():
        if not ev.summary.exists():
            continue
        e = json.loads(ev.summary.read_text())
        evals.append([ev.root.name, _pct(e.get("accuracy")), _pct(e.get("sc_accuracy")),
                      e.get("n", "-"), e.get("samples", "-")])
    parts += ["\n## Accuracy\n", _table(["evaluation", "accuracy", "self-consistency", "questions", "samples"],
                                        evals) if evals else "_no evaluation in this run_"]
    rounds = _rounds(RunDir(run))
    if rounds:
        stages = paired_stages(rounds)
        parts += ["\n## Reflection rounds\n", _table(
            ["round", *(f"{s} pairs" for s in stages), "val accuracy"],
            [[r.get("round", "-"), *(r.get(f"{s}_pairs", "-") for s in stages),
              "stopped: " + r["stopped"] if r.get("stopped") else _pct(r.get("val_accuracy"))] for r in rounds])]
    parts += [
        "\n## Prompt format\n",
        "Three stages, each one generation: recall knowledge, analyze every option in turn, then summarize. "
        "Inputs and the summary target, for one question:\n",
        f"```text\n{mode_sample(EXAMPLE, get_mode(_setting(settings, 'sft.mode') or FULL))}\n```",
        "\n## Usage\n",
        f"`{PLACEHOLDER}` is this folder, or its name on the hub.\n",
        f"```bash\ntinythinker ask --model {PLACEHOLDER} \"Where do you keep milk?\" fridge oven shelf\n```\n",
        "With transformers alone:\n",
        "```python\n" + (USAGE_SEQ2SEQ if seq2seq else USAGE_CAUSAL).format(out=PLACEHOLDER) + USAGE_CHAIN
        + "```\n",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(p for p in parts if p)))


def assert_no_secrets(text: str) -> None:
    """The card holds no secret by construction; refuse to write it if a key or token value still got in."""
    for name, value in os.environ.items():
        if name.endswith(("_KEY", "_TOKEN")) and len(value) >= 8 and value in text:
            raise ConfigError(f"the model card would contain the value of ${name}; not exporting")


def export(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    from .models import is_seq2seq, load_student, model_target

    run, out = Path(run_dir), Path(out)
    source = best_student(run)
    config_file = RunDir(run).config
    settings = (yaml.safe_load(config_file.read_text()) or {}) if config_file.exists() else {}
    model_target(out)  # refuses to replace a folder that holds something else

    model, tok = load_student(str(source), dtype="auto")  # keep the checkpoint's dtype
    seq2seq = is_seq2seq(model.config)
    gen = model.generation_config
    gen.max_new_tokens = _setting(settings, "student.max_new_tokens") or gen.max_new_tokens
    gen.pad_token_id, gen.eos_token_id = tok.pad_token_id, tok.eos_token_id
    card = model_card(run, source, settings, seq2seq=seq2seq, arch=type(model).__name__)
    assert_no_secrets(card)

    with atomic_dir(out) as tmp:  # a previous export is replaced only once this one is whole
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic_write_text(tmp / "README.md", card)
    return out


def main(cfg: Config, words: list[str]) -> int:
    if len(words) > 1:
        raise ConfigError(f"export takes one folder to write (got {' '.join(words)}); "
                          "usage: tinythinker export --run_dir R [OUT]")
    run = RunDir(cfg.run_dir)
    # a remote run is read from a fresh copy (no checkpoints), and exported into the bucket unless told otherwise
    source = fetch_folder(run.remote, skip=("ray",)) if run.remote else run.root
    dest = words[0] if words else (f"{run.remote}/export" if run.remote else str(run.export))
    if is_remote(dest):
        staged = export(source, cache_root() / "exports" / hashlib.sha1(dest.encode()).hexdigest()[:16])
        copy_tree(str(staged), dest)
    else:
        export(source, dest)
    print(f"exported {best_student(source)} -> {dest} (model, tokenizer, generation_config, README.md)")
    return 0
