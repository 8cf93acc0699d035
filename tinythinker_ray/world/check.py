"""The learning check's units of work: does a configuration learn on the synthetic world, and where is accuracy lost?

Per seed: the world and its questions, taught once by the rule teacher (`prepare_seed`); per (family, seed): a
from-scratch student (`student`), every phase-1 mode (`run_mode`), and the reflect rounds on the full mode
(`run_reflect`). Each unit is the real pipeline (teach, sft, eval, reflect) on a run directory of its own and
ends in one row of a results cache (`Cache`), so an interrupted check resumes. `diagnose` says how much of the
loss is the recall's or the analyses' (the world knows the gold ones). benchmarks/learning.py runs the grid (one
Ray Tune trial per family and seed) and writes the report (world/check_report.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config, SamplerConfig, SynthConfig, build_config, with_overrides
from ..core import format as fmt
from ..core.modes import FULL, MODES, Mode, get_mode
from ..core.records import Question
from ..errors import ConfigError
from ..sampling.base import Completion, GenParams, Sampler
from ..storage import append_jsonl, atomic_write_json, read_jsonl, write_jsonl

if TYPE_CHECKING:
    from ..rundir import RunDir

log = logging.getLogger(__name__)
FAMILIES = ("t5", "llama")
# 4 blocks, not the built-ins' 2: looking an option up by its letter ("For option B," -> "(B) ...") is an
# induction-style copy that 2-block students learned late or not at all within the grid's budget. The T5 splits
# them, 2 encoder + 2 decoder blocks: the Llama's parameter count (201k each), one size and compute budget.
STUDENT_LAYERS = {"llama": 4, "t5": 2}


def setting(default, doc: str):
    """A Settings field and its flag's help (benchmarks/learning.py makes a --flag of every field)."""
    return dataclasses.field(default=default, metadata={"help": doc})


@dataclass(frozen=True)
class Settings:
    """Everything a unit's result depends on (recorded in the work folder: units made otherwise are refused)."""

    # the world
    categories: int = setting(4, "categories of entities, each with its own properties (at least --options)")
    entities: int = setting(24, "made-up entities, spread over the categories")
    properties: int = setting(12, "made-up properties, spread over the categories")
    options: int = setting(3, "options per question (one right, the others from other categories)")
    holdout: float = setting(0.33, "share of each category's true (entity, property) pairs kept for valid and test")
    key: str = setting("fact", "synth.key: 'fact' (general facts) or 'link' (the recall does the combining, "
                       "each option's analysis only compares with it)")
    unseen: int = setting(0, "synth.unseen: entities per category no rationale mentions (needs --taught within "
                          "the others)")
    refer: str = setting("name", "synth.refer: 'it' = rationales never write an entity's name")
    pretrain: int = setting(0, "causal-LM steps on the training questions' text (no answers) before phase 1")
    train: int = setting(600, "training questions")
    # picks each run's and each round's best checkpoint, and the model the report keeps: on 30 questions that choice
    # kept a round 0.06 below phase 1 on test; on 150 every seed's kept model was at or above it (results/learning.md)
    valid: int = setting(150, "validation questions: pick checkpoints and the model the report keeps")
    test: int = setting(90, "test questions (combinations never asked in training)")
    train_sample: int = setting(30, "training questions scored too (seen combinations)")
    # the teacher
    taught: int | None = setting(None, "the first N training questions get rationales (default: all); the rest "
                                 "only labels")
    error_rate: float = setting(0.1, "share of the rule teacher's samples (with --error-scope question: of its "
                                "questions) that reason from a false fact to a wrong answer")
    error_scope: str = setting("sample", "teacher.error_scope: 'sample' (outvoted) or 'question' (the teacher "
                               "believes a false fact, and relabels)")
    teacher_samples: int = setting(4, "teacher samples per question (the majority decides)")
    teacher_temperature: float = setting(0.0, "teacher temperature (0: one wording per rationale)")
    augment: int = setting(1, "rationales kept per question")
    # phase 1
    steps: int = setting(1500, "phase-1 optimizer steps of every mode (0: --epochs)")
    epochs: float = setting(12, "phase-1 epochs when --steps is 0")
    # 16 halves a step, but at 1500 steps no Llama learned R+S (0.36, 0.29 test)
    batch_size: int = setting(32, "batch size of phase 1 and of reflection's RPO steps")
    lr: float = setting(3e-3, "phase-1 learning rate")
    t5_lr: float | None = setting(None, "the T5's own phase-1 learning rate (default: --lr)")
    # interval 1 and no length buckets: with interval 5 or bucketed batches a plain loop learned the analyses and
    # summaries far slower on this task (results/learning.md)
    interval: int = setting(1, "sft.interval: batches per recall / summarize block (analyze: interval x "
                            "options)")
    bucket: bool = setting(False, "train.bucket_by_length: batches of rows of similar length")
    evals: int = setting(1, "validation chain evals per phase-1 run (the best is kept)")
    max_new_tokens: int = setting(32, "tokens generated per stage")
    zero_stage: int = setting(0, "DeepSpeed ZeRO stage")
    # phase 2, at the method's scale: every training question, the authors' 10 samples, steps from the pairs
    rounds: int = setting(3, "reflect rounds, each from and against the previous best (0: phase 1 only)")
    reflect_from: str = setting(FULL, "the phase-1 mode whose model the rounds go on from (the paper: the full one)")
    reflect_questions: int | None = setting(None, "reflect.max_questions: only the first N of the --reflect-over "
                                            "questions are self-generated on (default: all of them)")
    reflect_samples: int = setting(10, "self-generated recalls per question, and analysis sets per chosen recall "
                                   "(the authors: 10)")
    reflect_cycles: int = setting(2, "passes over each round's pairs")
    reflect_lr: float = setting(1e-4, "reflection (RPO) learning rate")
    reflect_beta: float = setting(0.5, "RPO beta (the DPO term's temperature)")
    reflect_alpha: float = setting(0.5, "RPO alpha (the weight of the NLL term on the chosen side)")
    reflect_over: str = setting("taught", "reflect.questions: 'taught', or 'all' (the untaught questions too, by "
                                "their label)")
    reflect_mode: str = setting("recall_analyze", "reflect.mode: the stages that get pairs (the authors: "
                                "recall_analyze)")
    # not the pipeline's 0.7: the from-scratch students are so sharp that at 0.7 a question's sampled chains
    # were identical, so no question had both a chosen and a rejected chain (0 pairs, results/learning.md)
    reflect_temperature: float = setting(1.5, "self-generation temperature")
    # added (x 1000) to the seed of reflection's sampling and training order: a run with another value from the
    # same phase 1 is a replicate, whose spread is the run-to-run noise (benchmarks/replicates.py)
    reflect_seed: int = setting(0, "another value from the same phase 1 makes a replicate (benchmarks/replicates.py)")
    # a work folder made with these settings (reflection's aside) whose first round's label-reaching chains teach
    # phase 1 here too, one per untaught question: the STaR-style diagnostic of world/self_taught.py
    self_taught_from: str | None = setting(None, "a work folder whose first round's label-reaching chains also "
                                           "teach phase 1 here (a diagnostic of reflection's chosen side; default: "
                                           "none)")
    self_taught_filter: str = setting("label", "with --self-taught-from: 'label', or 'truth' (only chains true to "
                                      "the world in every stage)")
    student: str = "llama 4 blocks, t5 2+2 blocks, tokenizer trained on the task text"

    def lr_of(self, family: str) -> float:
        return self.t5_lr if family == "t5" and self.t5_lr else self.lr


SETTINGS_FILE = "settings.json"  # in a work folder: the Settings its units were made with (learning.py writes it)


def with_defaults(recorded: dict) -> dict:
    """Settings recorded by an earlier version, complete: a setting added since counts as its default (it did not
    exist, so it was not changed)."""
    return dataclasses.asdict(Settings()) | recorded


def recorded_settings(work: Path) -> dict | None:
    """The settings a work folder's units were made with (`with_defaults`), or None for a new folder."""
    record = work / SETTINGS_FILE
    return with_defaults(json.loads(record.read_text())) if record.exists() else None


def check_of(work: Path) -> Check | None:
    """The check a work folder's units were made with (its recorded settings), or None for a folder no check ran in:
    what the benchmark scripts that read a finished check (replicates, the T5 reference) start from."""
    recorded = recorded_settings(work)
    return None if recorded is None else Check(work, Settings(**recorded))


REFLECT_SETTINGS = ("rounds", *(f.name for f in dataclasses.fields(Settings) if f.name.startswith("reflect_")))
ROUND = "reflect-"  # a reflect round's stage in the cache, and its evaluation's tag: "reflect-<i>"


def round_stage(i: int) -> str:
    return f"{ROUND}{i}"


def is_round(stage: str) -> bool:
    return stage.startswith(ROUND)


def round_number(stage: str) -> int:
    return int(stage.removeprefix(ROUND))


def settings_diff(before: dict, now: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """"name: old -> new" for each setting that differs (one missing from `before` reads as None)."""
    return [f"{k}: {before.get(k)} -> {v}" for k, v in now.items() if k not in ignore and before.get(k) != v]


def reuse_phase1(source: Path, work: Path, settings: Settings) -> None:
    """A new work folder `work` holding `source`'s world, teacher output, students and phase-1 units, but none of
    its reflect rounds: reflection's settings (REFLECT_SETTINGS) can then be tried on the same phase-1 models,
    and `source` stays as it was. Refused when `settings` differ from `source`'s in anything phase 1 depends on."""
    from ..rundir import ROUND_STEP

    before = recorded_settings(source)
    if before is None:
        raise ConfigError(f"{source} is not a learning-check work folder (no {SETTINGS_FILE})")
    if diff := settings_diff(before, dataclasses.asdict(settings), ignore=REFLECT_SETTINGS):
        raise ConfigError(f"{source}'s phase 1 was made with other settings ({', '.join(diff)}): only reflection's "
                          f"({', '.join('--' + k.replace('_', '-') for k in REFLECT_SETTINGS)}) may differ")
    if work.exists() and any(work.iterdir()):
        raise ConfigError(f"{work} is not empty: reusing {source}'s phase 1 needs a new --work")
    source, work = source.resolve(), work.resolve()

    def skipped(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        return {n for n in names if here == source and n == "tune"  # the old Tune grids
                or n == "reflect" and (here / "manifest.json").exists()  # a run's round folders
                or here.name == "eval" and is_round(n)}  # and the rounds' evaluations

    shutil.copytree(source, work, symlinks=True, ignore=skipped, dirs_exist_ok=True)
    # records name their files by absolute path (a unit's best model, a mode's link to the seed's teacher output):
    # the links first, so that no rewrite below can reach through one into `source`
    for link in (p for p in work.rglob("*") if p.is_symlink() and str(source) in os.readlink(p)):
        target = os.readlink(link).replace(str(source), str(work))
        link.unlink()
        link.symlink_to(target, target_is_directory=True)
    for path in [*work.rglob("*.json"), *work.rglob("*.jsonl")]:
        if path.resolve().is_relative_to(work) and str(source) in (text := path.read_text()):
            path.write_text(text.replace(str(source), str(work)))
    for manifest in work.rglob("manifest.json"):
        data = json.loads(manifest.read_text())
        data["steps"] = {k: v for k, v in data["steps"].items() if not k.startswith(ROUND_STEP)}
        atomic_write_json(manifest, data)
    cache = work / "results.jsonl"
    write_jsonl(cache, [r for r in read_jsonl(cache) if not is_round(r["stage"])])


def synth_config(s: Settings, seed: int) -> SynthConfig:
    return SynthConfig(seed=seed, categories=s.categories, entities=s.entities, properties=s.properties,
                       options=s.options, holdout=s.holdout, train=s.train, valid=s.valid, test=s.test, key=s.key,
                       unseen=s.unseen, refer=s.refer)


def fresh_test_questions(s: Settings, seed: int, n: int) -> list[Question]:
    """Up to `n` held-out questions the check never asked: the seed's test-question generator continued past its
    `s.test` (the same held-out pairs, new distractors, kinds and option orders; earlier splits are drawn first, so
    they and the first `s.test` stay as they were). A repeat of one of the check's own questions is left out."""
    from . import synth

    _, questions = synth.build(synth_config(dataclasses.replace(s, test=s.test + n), seed))
    asked, fresh = questions["test"][: s.test], questions["test"][s.test:]
    seen = {(q.stem, q.options, q.answer) for q in asked}
    return [q for q in fresh if (q.stem, q.options, q.answer) not in seen]


def check_world(s: Settings, seed: int) -> None:
    """ConfigError, naming the flag, if the settings cannot make the seed's world (a build takes milliseconds), or
    if the teacher would write about the unseen entities (--taught past the questions that name none)."""
    from . import synth

    world, questions = synth.build(synth_config(s, seed))
    clean = synth.clean_prefix(world, questions["train"])
    if s.unseen and not (s.taught and s.taught <= clean):
        raise ConfigError(f"--unseen {s.unseen}: seed {seed}'s first {clean} training questions name no unseen "
                          f"entity; --taught must be at most that (it is {s.taught}), or the teacher writes about them")


def config(s: Settings, *, seed: int, data_dir: Path, run_dir: Path, model: str = "tiny-llama", family: str = "llama",
           mode: str = FULL, eval_every: int | None = None, num_cpus: int | None = None) -> Config:
    """A unit's Config: the synth data, the rule teacher, a from-scratch student, small CPU settings."""
    return build_config({
        "run_dir": str(run_dir), "seed": seed,
        "data": {"name": "custom", "path": str(data_dir)},
        "teacher": {"backend": "rules", "model": str(data_dir / "world.json"), "fewshot_path": str(data_dir),
                    "shots": 2, "samples": s.teacher_samples, "augment": s.augment,
                    "temperature": s.teacher_temperature, "error_rate": s.error_rate,
                    "error_scope": s.error_scope, "retry_rounds": 1, "max_questions": s.taught,
                    "block_size": 256, "seed": seed},
        "student": {"model": model, "max_new_tokens": s.max_new_tokens},
        "sampler": {"backend": "hf", "batch_size": 64},  # not auto (vLLM for the Llama): one engine for both
        "train": {"num_workers": 1, "zero_stage": s.zero_stage, "bf16": False, "eval_limit": s.valid,
                  "log_every": 100, "bucket_by_length": s.bucket},
        "sft": {"mode": mode, "interval": s.interval, "lr": s.lr_of(family), "batch_size": s.batch_size,
                "epochs": s.epochs, "max_steps": s.steps or None, "eval_every": eval_every, "seed": seed},
        "reflect": {"iterations": max(s.rounds, 1), "samples": s.reflect_samples,
                    "analyze_samples": s.reflect_samples, "max_questions": s.reflect_questions,
                    "questions": s.reflect_over, "mode": s.reflect_mode, "cycles": s.reflect_cycles,
                    "lr": s.reflect_lr, "beta": s.reflect_beta,
                    "alpha": s.reflect_alpha, "batch_size": s.batch_size, "temperature": s.reflect_temperature,
                    "seed": seed + 1000 * s.reflect_seed},
        "eval": {"batch_size": 64, "samples": 1},
        "cluster": {"num_cpus": num_cpus},
    })


class Cache:
    """<work>/results.jsonl: one row per finished unit (family, seed, stage); a rerun skips them."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = {self.key(r): r for r in read_jsonl(path)}

    @staticmethod
    def key(r: dict) -> tuple:
        return r["family"], r["seed"], r["stage"]

    def get(self, family: str, seed: int, stage: str) -> dict | None:
        return self.rows.get((family, seed, stage))

    def add(self, row: dict) -> dict:
        self.rows[self.key(row)] = row
        append_jsonl(self.path, [row])
        return row


@dataclass(frozen=True)
class Check:
    """One work folder of the learning check and its settings."""

    work: Path
    settings: Settings

    def seed_dir(self, seed: int) -> Path:
        return self.work / f"seed{seed}"

    def data_dir(self, seed: int) -> Path:
        return self.seed_dir(seed) / "data"

    def teach_run(self, seed: int) -> Path:
        return self.seed_dir(seed) / "teach-run"

    def mode_dir(self, family: str, seed: int, mode: str) -> Path:
        """A run_dir per (family, seed, mode) whose teach/ links the seed's teacher output (sft rewrites the
        stage rows for its mode itself)."""
        from ..rundir import RunDir

        run_dir = self.seed_dir(seed) / family / mode
        teach = RunDir(run_dir).teach.root
        if not teach.exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            teach.symlink_to(RunDir(self.teach_run(seed)).teach.root, target_is_directory=True)
        return run_dir

    def config(self, seed: int, run_dir: Path, **kw) -> Config:
        return config(self.settings, seed=seed, data_dir=self.data_dir(seed), run_dir=run_dir, **kw)

    @property
    def cache(self) -> Cache:
        return Cache(self.work / "results.jsonl")


# ----- the units -----------------------------------------------------------------------------------------------

def prepare_seed(check: Check, seed: int) -> None:
    """The seed's world and questions, taught once by the rule teacher."""
    from ..teacher.distill import teach
    from . import synth

    cache = check.cache
    if cache.get("teacher", seed, "teach"):
        return
    synth.write(synth_config(check.settings, seed), check.data_dir(seed))
    t0 = time.time()
    stats = teach(check.config(seed, check.teach_run(seed)))
    keep = ("questions", "samples", "parsed", "consistent", "kept", "relabelled", "questions_with_rationales")
    row = {"family": "teacher", "seed": seed, "stage": "teach", **{k: stats[k] for k in keep},
           "rows": {s: c["written"] for s, c in stats["rows"].items()}}
    if check.settings.self_taught_from:
        row |= self_taught(check, seed)
    cache.add(row | {"seconds": round(time.time() - t0, 1)})
    log.info("seed %d: taught %d questions, kept %d rationales, relabelled %d (%.0f s)", seed, stats["questions"],
             stats["kept"], stats["relabelled"], time.time() - t0)


def self_taught_source(s: Settings) -> Path:
    """`s.self_taught_from`, refused unless it is a work folder whose phase 1 was made with `s`, reflection's aside."""
    source = Path(s.self_taught_from).resolve()
    before = recorded_settings(source)
    if before is None:
        raise ConfigError(f"--self-taught-from {source}: not a learning-check work folder (no {SETTINGS_FILE})")
    ignore = (*REFLECT_SETTINGS, "self_taught_from", "self_taught_filter")
    if diff := settings_diff(before, dataclasses.asdict(s), ignore=ignore):
        raise ConfigError(f"--self-taught-from {source}: its phase 1 was made with other settings ({', '.join(diff)})")
    return source


def self_taught(check: Check, seed: int) -> dict:
    """The seed's teacher output extended with the source work folder's self-taught chains (world/self_taught.py);
    refused unless that folder's phase 1 was made with these settings, reflection's aside."""
    from ..rundir import RunDir
    from . import synth
    from .self_taught import add_self_taught, same_world, source_generations

    s = check.settings
    source = self_taught_source(s)
    same_world(Check(source, s).data_dir(seed), check.data_dir(seed))
    world = synth.load_world(check.data_dir(seed))
    added = add_self_taught(source_generations(source, seed, s.reflect_from), RunDir(check.teach_run(seed)).teach,
                            truth=lambda q: world_truth(world, q), only_true=s.self_taught_filter == "truth")
    log.info("seed %d: phase 1 also taught %d self-generated chains from %s", seed, added["self_taught"], source)
    return added


def student(check: Check, family: str, seed: int) -> str:
    """A fresh tiny student for this seed (its own random init), built offline like the built-ins but with
    STUDENT_LAYERS[family] blocks, its tokenizer trained on the seed's training questions and rationales only:
    the made-up words are whole tokens and the vocabulary ~570 tokens instead of 4000 (a training step ~3x
    cheaper: the tied output layer is most of a tiny model's compute); option letters are tokens of their own."""
    from ..data.loaders import load_benchmark
    from ..models import build_tiny
    from . import synth

    out = check.work / "models" / f"{family}-{seed}"
    if (out / "config.json").exists():
        return str(out)
    world = synth.load_world(check.data_dir(seed))
    train = load_benchmark("custom", str(check.data_dir(seed))).train
    text = [" ".join([q.stem, *(t for _, t in q.options), ex.knowledge, *(r for _, r in ex.reasons)])
            for q in train for ex in (synth.explain(world, q, style=s) for s in range(synth.STYLES))]
    steps = check.settings.pretrain
    built = build_tiny(family, out.with_name(out.name + "-raw") if steps else out, seed=seed, text=text,
                       letters_apart=True, layers=STUDENT_LAYERS[family])
    return pretrain(built, pretrain_texts(train, seed), steps, seed, out) if steps else built


def pretrain_texts(questions: list[Question], seed: int) -> list[str]:
    """Each stem with another question's options: every name, in the places the chain names it, but never beside
    the options its own question lists (they always hold its answer, so that would teach facts)."""
    order = random.Random(seed).sample(questions, len(questions))
    return [f"{q.stem}\n{fmt.options_line(order[(i + 1) % len(order)].options)}" for i, q in enumerate(order)]


def pretrain(model_dir: str, texts: list[str], steps: int, seed: int, out: Path) -> str:
    """`steps` of plain causal-LM training (batch 32, lr 3e-3) on `texts` -- text that names the world's entities
    and properties but states no fact of it -- saved to `out`. A pretrained student has seen
    every name in some text; one built from scratch has never written an entity no rationale mentions (an
    untrained embedding), so it cannot even sample a recall about it, let alone a right one (results/learning.md,
    --unseen). Causal students only: a T5's pretraining objective is another story."""
    import torch

    from ..models import load_student
    from ..storage import atomic_dir
    from ..train.losses import IGNORE

    model, tok = load_student(model_dir)
    if model.config.is_encoder_decoder:
        raise ConfigError("learning check: --pretrain is for causal students (--families llama)")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = [texts[i] for i in torch.randint(len(texts), (32,), generator=gen).tolist()]
        enc = tok([t + tok.eos_token for t in batch], return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            log.info("pretrain %s: step %d loss %.3f", out.name, step, loss.item())
    model.eval()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return str(out)


def planned_steps(check: Check, run_dir: Path, mode: str) -> int:
    """The steps sft will take for this mode (the same schedule it builds), to place the validation evals."""
    from ..rundir import RunDir
    from ..train.schedule import one_epoch, stage_plan
    from ..train.sft import read_stage

    s = check.settings
    if s.steps:
        return s.steps
    m = get_mode(mode)
    sizes = {st: len(read_stage(RunDir(run_dir).teach.stage(st), m)) // s.batch_size for st in m.stages}
    return math.ceil(s.epochs * len(one_epoch(sizes, stage_plan(m, s.interval, s.options))))


def score(cfg: Config, model_path: str, tag: str, train_sample: int) -> dict:
    """Test accuracy (held-out combinations) and accuracy on a sample of training questions (seen ones), from one
    evaluation pass over both (one sampler start-up instead of two)."""
    from ..eval.evaluate import evaluate, load_split
    from ..rundir import RunDir

    test, seen = load_split(cfg, "test"), load_split(cfg, "train")[:train_sample]
    out = RunDir(cfg.run_dir).eval(tag)
    evaluate(cfg, model_path, test + seen, "test+train", out.root)
    correct = {r["id"]: r["correct"] for r in read_jsonl(out.results)}
    row = {"test": statistics.fmean(correct[q.id] for q in test), "test_n": len(test)}
    if seen:
        row |= {"train": statistics.fmean(correct[q.id] for q in seen), "train_n": len(seen)}
    return row


def run_mode(check: Check, family: str, seed: int, mode: str) -> dict:
    from ..train.sft import sft

    cache = check.cache
    if row := cache.get(family, seed, mode):
        return row
    run_dir = check.mode_dir(family, seed, mode)
    every = -(-planned_steps(check, run_dir, mode) // check.settings.evals)
    cfg = check.config(seed, run_dir, model=student(check, family, seed), family=family, mode=mode,
                       eval_every=every)
    t0 = time.time()
    fit = sft(cfg)
    if fit.best_dir is None:
        raise RuntimeError(f"sft {family} seed {seed} {mode}: no best checkpoint in {run_dir}")
    row = {"family": family, "seed": seed, "stage": mode, "best": fit.best_dir, "valid": fit.best_accuracy,
           "steps": fit.steps, "train_seconds": round(fit.train_seconds, 1), "sft_seconds": round(fit.seconds, 1),
           **score(cfg, fit.best_dir, "sft", check.settings.train_sample), "seconds": round(time.time() - t0, 1)}
    if get_mode(mode).recall:  # where the chain loses accuracy, and how often its sampled recalls are right
        row |= diagnose(check, seed, fit.best_dir, get_mode(mode))
    log.info("%s seed %d %s: test %.3f train %.3f valid %.3f (%.0f s)", family, seed, mode, row["test"],
             row.get("train", float("nan")), row["valid"], row["seconds"])
    return cache.add(row)


def run_reflect(check: Check, family: str, seed: int) -> list[dict]:
    """The reflect rounds on the `reflect_from` mode's run_dir, from its phase-1 best; each round scored and
    diagnosed."""
    from ..reflect.iterate import reflect

    s, cache = check.settings, check.cache
    stages = [round_stage(i) for i in range(1, s.rounds + 1)]
    if all(cache.get(family, seed, st) for st in stages):
        return [cache.get(family, seed, st) for st in stages]
    mode = s.reflect_from
    previous = cache.get(family, seed, mode)
    run_dir = check.mode_dir(family, seed, mode)
    cfg = check.config(seed, run_dir, model=student(check, family, seed), family=family, mode=mode)
    t0 = time.time()
    records = reflect(cfg, model=previous["best"])
    rows = []
    for i, stage in enumerate(stages):
        if row := cache.get(family, seed, stage):
            rows.append(row)
            previous = row
            continue
        rec = records[i] if i < len(records) else {"stopped": "an earlier round stopped"}
        if rec.get("best"):
            row = {"family": family, "seed": seed, "stage": stage, "best": rec["best"], "valid": rec.get("val_accuracy"),
                   "pairs": {st: rec[f"{st}_pairs"] for st in ("recall", "analyze", "summarize")
                             if f"{st}_pairs" in rec},
                   "logp_margin": rec.get("logp_margin"), "steps": rec.get("steps"),
                   **score(cfg, rec["best"], stage, s.train_sample),
                   **diagnose(check, seed, rec["best"], MODES[mode])}
        else:  # no pairs to train on: the model stays the previous one (as `tinythinker run` keeps it)
            row = {k: previous[k] for k in previous if k not in ("stage", "seconds", "steps", "pairs")}
            row |= {"stage": stage, "stopped": rec.get("stopped", "no best")}
        row["seconds"] = round(time.time() - t0, 1)
        t0 = time.time()
        log.info("%s seed %d %s: test %.3f train %.3f%s", family, seed, stage, row["test"], row.get("train", math.nan),
                 f" (stopped: {row['stopped']})" if row.get("stopped") else "")
        rows.append(cache.add(row))
        previous = row
    return rows


def oracle(check: Check, seed: int) -> dict:
    """The rule backend as the student: what a perfect chain scores through the same evaluation."""
    from ..eval.evaluate import evaluate, load_split
    from ..rundir import RunDir

    cache = check.cache
    if row := cache.get("oracle", seed, FULL):
        return row
    run = check.teach_run(seed)
    cfg = with_overrides(check.config(seed, run), {"sampler.backend": "rules"})
    summary = evaluate(cfg, str(check.data_dir(seed) / "world.json"), load_split(cfg, "test"), "test",
                       RunDir(run).eval("test-oracle").root)
    return cache.add({"family": "oracle", "seed": seed, "stage": FULL, "test": summary["accuracy"]})


def unit_mode(check: Check, row: dict) -> tuple[str, str]:
    """A unit's phase-1 mode and the tag its evaluation is saved under: a reflect round's model is the
    `reflect_from` mode's, evaluated as its stage name; a phase-1 mode's is evaluated as "sft"."""
    stage = row["stage"]
    return (check.settings.reflect_from, stage) if is_round(stage) else (stage, "sft")


def unit_run(check: Check, row: dict) -> RunDir:
    """The run folder a unit's model lives in: its phase-1 mode's (a reflect round's is under the `reflect_from`
    mode's). Only reads: unlike `Check.mode_dir` it links no teacher output."""
    from ..rundir import RunDir

    return RunDir(check.seed_dir(row["seed"]) / row["family"] / unit_mode(check, row)[0])


def saved_test_results(check: Check, row: dict) -> list[tuple[Question, dict]] | None:
    """A unit's saved evaluation rows (one per question, with its chains) on the held-out test split, each with its
    question; None when the evaluation is not on disk (a cache row from another machine, or a stage never
    evaluated)."""
    from ..data.loaders import load_benchmark

    mode, tag = unit_mode(check, row)
    results = unit_run(check, row).eval(tag).results
    if mode not in MODES or not results.exists():
        return None
    test = {q.id: q for q in load_benchmark("custom", str(check.data_dir(row["seed"]))).test}
    return [(test[r["id"]], r) for r in read_jsonl(results) if r["id"] in test]


def stages_right(check: Check, row: dict) -> dict[str, float]:
    """From a unit's saved test evaluation, how often the student's own stages are right on held-out questions:
    `test_recall_right`, the share of questions whose greedy recall is a true general fact of the world, and
    `test_analyses_right`, the share of (question, option) analyses that are the world's reason for that option
    (any wording for either), and `test_one_text`, the share of questions whose analyses are one text for every
    option (the student did not look its option up by the letter). Only the stages the unit's mode has.
    `test_trait` / `test_which`: the accuracy on each kind of question (a student can learn one and not the
    other). With unseen entities (synth.unseen), `test_unseen`: the accuracy on the test questions that name one,
    whose facts only labels taught. {} when the evaluation is not on disk."""
    from . import synth

    mode = MODES.get(unit_mode(check, row)[0])
    results = saved_test_results(check, row) if mode else None
    if not results:
        return {}
    world = synth.load_world(check.data_dir(row["seed"]))
    truth = [(world_truth(world, q), r["chains"][0]) for q, r in results]
    out = {}
    if mode.recall:
        out["test_recall_right"] = statistics.fmean(chain["recall"] in facts for (facts, _), chain in truth)
    if "analyze" in mode.stages:
        out["test_analyses_right"] = statistics.fmean(text in reasons.get(label, ()) for (_, reasons), chain in truth
                                                      for label, text in chain["analyses"])
        out["test_one_text"] = statistics.fmean(len({text for _, text in chain["analyses"]}) == 1
                                                for _, chain in truth)
    by_kind: dict[str, list[bool]] = {}  # "trait" / "which" -> correct per question
    for q, r in results:
        by_kind.setdefault(synth.parse_stem(world, q.stem)[0], []).append(r["correct"])
    out |= {f"test_{kind}": statistics.fmean(right) for kind, right in by_kind.items()}
    if unseen := [r["correct"] for q, r in results if synth.mentions(q, world.unseen)]:
        out["test_unseen"] = statistics.fmean(unseen)
    return out


def world_truth(world, q: Question) -> tuple[set[str], dict[str, set[str]]]:
    """A question's true recalls (its general fact, in every wording) and, per option label, its true analyses
    (the world's reason for that option, in every wording)."""
    from . import synth

    wordings = [synth.explain(world, q, style=s) for s in range(synth.STYLES)]
    reasons: dict[str, set[str]] = {}
    for ex in wordings:
        for label, text in ex.reasons:
            reasons.setdefault(label, set()).add(text)
    return {ex.knowledge for ex in wordings}, reasons


def selfgen_truth(check: Check, row: dict) -> dict[str, float]:
    """A reflect round's self-generated chains (sampled by the model the round started from), split by whether
    they reached the label (where chosen sides come from) or not (rejected sides): the share of their recalls that
    are a true general fact of the world, and of their analyses that are the world's reason for their option.
    A pair teaches reasoning only as far as its chosen chain is truer than its rejected one, and a guess reaches
    the label by chance once in `options`. {} when not a round or its generations are not on disk."""
    from . import synth

    tag = unit_mode(check, row)[1]
    if not is_round(tag):
        return {}
    gens = unit_run(check, row).reflect(round_number(tag)).generations
    if not gens.exists():
        return {}
    world = synth.load_world(check.data_dir(row["seed"]))
    seen: dict[str, list[bool]] = {}
    for g in read_jsonl(gens):
        q = Question.from_dict(g["question"])
        facts, reasons = world_truth(world, q)
        for chain in g["chains"]:
            side = "chosen" if chain.get("prediction") == q.answer else "rejected"
            seen.setdefault(f"{side}_recall_true", []).append(chain["recall"] in facts)
            for label, text in chain.get("analyses") or []:
                seen.setdefault(f"{side}_analyses_true", []).append(text in reasons.get(label, ()))
    return {k: statistics.fmean(v) for k, v in sorted(seen.items())}


def held_out_outcomes(check: Check, row: dict) -> dict[str, bool] | None:
    """Question id -> answered right, on the held-out test split, from a unit's saved evaluation (None: not on
    disk). Two units' outcomes on the same questions give a paired comparison (check_report.paired_change)."""
    results = saved_test_results(check, row)
    return {q.id: bool(r["correct"]) for q, r in results} if results is not None else None


# ----- where accuracy is lost ----------------------------------------------------------------------------------

class GoldStages(Sampler):
    """The student, with the stages in `gold` answered by the world's rule oracle instead: the chain's accuracy
    with a gold recall (and gold analyses) is what a better recall (and analyses) could give at most."""

    def __init__(self, student: Sampler, oracle: Sampler, gold: tuple[str, ...]):
        self.student, self.oracle, self.gold = student, oracle, gold

    def generate(self, prompts, params: GenParams, regexes=None) -> list[list[Completion]]:
        route = [fmt.parse_stage_input(p)["stage"] in self.gold for p in prompts]
        ours = iter(self.student.generate([p for p, g in zip(prompts, route, strict=True) if not g], params))
        gold = iter(self.oracle.generate([p for p, g in zip(prompts, route, strict=True) if g], params))
        return [next(gold) if g else next(ours) for g in route]


def diagnose(check: Check, seed: int, model_path: str, mode: Mode) -> dict:
    """Per model: test accuracy of the chain with the gold recall given, and with gold recall and analyses given
    (a mode with both; only the summary the student's); the share of sampled recalls (reflect.samples at
    reflect.temperature) on the training sample whose greedy chain reaches the label (what self-generation
    starts from)."""
    from ..data.loaders import load_benchmark
    from ..eval.chain import accuracy, run_chain
    from ..sampling.hf import HFSampler
    from .rules import RulesSampler

    s = check.settings
    splits = load_benchmark("custom", str(check.data_dir(seed)))
    student_ = HFSampler(model_path, batch_size=64)
    oracle_ = RulesSampler(SamplerConfig(backend="rules", model=str(check.data_dir(seed))))
    greedy = GenParams(max_tokens=s.max_new_tokens)
    out = {}
    for name, gold in (("test_gold_recall", ("recall",)), ("test_gold_analyses", ("recall", "analyze"))):
        if not set(gold) <= set(mode.stages):  # R+S: no analyses to give
            continue
        chains = run_chain(GoldStages(student_, oracle_, gold), splits.test, mode, recall=greedy, analyze=greedy)
        out[name] = accuracy(chains)["accuracy"]
    sampled = GenParams(n=s.reflect_samples, temperature=s.reflect_temperature, max_tokens=s.max_new_tokens)
    chains = run_chain(student_, splits.train[: s.train_sample], mode, recall=sampled, analyze=greedy)
    out["train_right_recalls"] = statistics.fmean(c.correct for rs in chains for c in rs)
    student_.close()
    return out
