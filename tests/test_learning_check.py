"""The learning check (world/check.py, world/check_report.py, benchmarks/learning.py): its report and diagnostics
(pure), and one tiny end-to-end run of the script as a user starts it (slow: real teach, Ray Tune trials driving
Ray Train + DeepSpeed sft, a reflect round, chain eval, report files)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinythinker_ray.config import SamplerConfig, SynthConfig
from tinythinker_ray.core import format as fmt
from tinythinker_ray.core.modes import FULL, MODES
from tinythinker_ray.data.loaders import load_benchmark
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.eval.chain import accuracy, run_chain
from tinythinker_ray.rundir import RunDir
from tinythinker_ray.sampling.base import Completion, Sampler
from tinythinker_ray.storage import read_jsonl, write_jsonl
from tinythinker_ray.world import synth
from tinythinker_ray.world.check import (
    SETTINGS_FILE,
    Cache,
    Check,
    GoldStages,
    Settings,
    fresh_test_questions,
    held_out_outcomes,
    pretrain_texts,
    recorded_settings,
    reuse_phase1,
    selfgen_truth,
    stages_right,
    student,
    synth_config,
)
from tinythinker_ray.world.check_report import (
    aggregate,
    kept_by_valid,
    markdown,
    paired_change,
    reflect_change,
    self_taught_change,
    self_taught_totals,
    sign_test,
)
from tinythinker_ray.world.rules import RulesSampler

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"


def report_meta(**over) -> dict:
    """The run facts `markdown` writes a report from (the check's `write_report` gathers them), for one seed."""
    return {"settings": dataclasses.asdict(Settings()), "oracle": 1.0, "majority": 0.4, "seeds": [0],
            "teacher": {"kept": 1, "questions": 1, "relabelled": 0}, "seconds": 60, "machine": "test",
            "cached": 0, "unit_seconds": 60, "unit_train_seconds": 30} | over


def test_report_lines_list_seeds_in_order_whatever_order_the_runs_finished():
    rows = [{"family": "t5", "seed": s, "stage": "summarize", "test": t, "steps": 10}
            for s, t in ((2, 0.2), (0, 0.4), (1, 0.3))]
    [line] = aggregate(rows, ["t5"], [0, 1, 2], rounds=0)
    assert line["seeds"] == [0, 1, 2] and line["test_per_seed"] == [0.4, 0.3, 0.2]


def test_a_check_without_rounds_describes_no_reflection_settings():
    """A phase-1-only check (a self-taught one, say) ran no rounds: its unused reflect settings are not listed."""
    rows = [{"family": "llama", "seed": 0, "stage": FULL, "test": 0.5, "steps": 9}]
    meta = report_meta()
    text = markdown(aggregate(rows, ["llama"], [0], rounds=0), meta | {"settings": meta["settings"] | {"rounds": 0}})
    assert "interval 1); no reflect rounds." in text and "beta" not in text
    assert "reflect rounds = phase 2 (RPO)" in markdown(aggregate(rows, ["llama"], [0], rounds=0), meta)


def test_the_report_names_each_rounds_pair_counts_by_seed_even_when_a_seed_has_none():
    rows = [{"family": "llama", "seed": s, "stage": "reflect-1", "test": 0.5, "steps": 9,
             **({"pairs": {"recall": 10 + s, "analyze": 0}} if s != 1 else {})} for s in (2, 0, 1)]
    lines = aggregate(rows, ["llama"], [0, 1, 2], rounds=1)
    meta = report_meta(seeds=[0, 1, 2])
    assert "llama round 1: 10/0 (0), 12/0 (2)." in markdown(lines, meta)
    analyze = markdown(lines, meta | {"settings": meta["settings"] | {"reflect_mode": "analyze"}})
    assert "(recall / analyze, seed; built for both, trained on the analyze pairs only)" in analyze
    assert "alpha 0.5, analyze pairs only." in analyze and "pairs only" not in markdown(lines, meta)
    rows = [{**r, "pairs": {"recall": 10, "analyze": 40, "summarize": 7 + r["seed"]}} for r in rows]
    summary = markdown(aggregate(rows, ["llama"], [0, 1, 2], rounds=1),
                       meta | {"settings": meta["settings"] | {"reflect_mode": "recall_analyze_summarize"}})
    assert "(recall / analyze / summarize, seed): llama round 1: 10/40/7 (0), 10/40/8 (1), 10/40/9 (2)." in summary
    assert "alpha 0.5, summary pairs too (our addition)." in summary
    replicate = markdown(lines, meta | {"settings": meta["settings"] | {"reflect_seed": 2}})
    assert "alpha 0.5, reflect seed 2." in replicate and "reflect seed" not in markdown(lines, meta)


def test_a_work_folders_recorded_settings_read_a_setting_added_since_as_its_default(tmp_path):
    assert recorded_settings(tmp_path) is None  # a new folder
    old = dataclasses.asdict(Settings(key="link", steps=4000))
    del old["error_scope"]  # recorded before the setting existed
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(old))
    # the learning check compares this dict with the settings asked for: the absent one must read as its default
    assert recorded_settings(tmp_path) == dataclasses.asdict(Settings(key="link", steps=4000, error_scope="sample"))


def test_reusing_a_work_folders_phase1_drops_its_rounds_and_points_every_record_at_the_copy(tmp_path):
    """--phase1-from: the copy's records and links name the copy (its rounds would otherwise write into, or
    "resume" from, the source's), its rounds and their evaluations are gone, and the source is untouched."""
    source, work = tmp_path / "source", tmp_path / "work"
    run = source / "seed0" / "llama" / FULL
    (source / "seed0" / "teach-run" / "teach").mkdir(parents=True)
    for sub in ("sft/best", "reflect/iter_1", "eval/sft", "eval/reflect-1"):
        (run / sub).mkdir(parents=True)
    (run / "teach").symlink_to(source / "seed0" / "teach-run" / "teach", target_is_directory=True)
    (source / "tune").mkdir()
    (source / SETTINGS_FILE).write_text(json.dumps(dataclasses.asdict(Settings(steps=4000))))
    phase1 = {"family": "llama", "seed": 0, "stage": FULL, "best": str(run / "sft/best"), "test": 0.7}
    write_jsonl(source / "results.jsonl", [phase1, phase1 | {"stage": "reflect-1", "best": str(run / "reflect")}])
    (run / "manifest.json").write_text(json.dumps({"steps": {"sft": {"best_dir": str(run / "sft/best")},
                                                             "reflect/iter_1": {"record": {}}}}))
    before = sorted(p.relative_to(source) for p in source.rglob("*"))

    with pytest.raises(ConfigError, match=r"other settings \(lr: 0.003 -> 0.005\).*--reflect-beta"):
        reuse_phase1(source, work, Settings(steps=4000, lr=5e-3))
    reuse_phase1(source, work, Settings(steps=4000, reflect_beta=2.0, rounds=5))  # reflection's may differ

    copy = work / "seed0" / "llama" / FULL
    assert list(read_jsonl(work / "results.jsonl")) == [phase1 | {"best": str(copy / "sft/best")}]
    assert json.loads((copy / "manifest.json").read_text()) == {"steps": {"sft": {"best_dir": str(copy / "sft/best")}}}
    assert (copy / "teach").resolve() == (work / "seed0" / "teach-run" / "teach").resolve()
    assert sorted(p.name for p in copy.iterdir()) == ["eval", "manifest.json", "sft", "teach"]
    assert [p.name for p in (copy / "eval").iterdir()] == ["sft"] and not (work / "tune").exists()
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
    assert str(source) in (source / "results.jsonl").read_text()
    with pytest.raises(ConfigError, match="is not empty"):  # never over another folder's units
        reuse_phase1(source, work, Settings(steps=4000))


class Clueless(Sampler):
    """A student that recalls and analyses nothing useful but reads a summary off right analyses."""

    def generate(self, prompts, params, regexes=None):
        from tinythinker_ray.core import format as fmt

        def reply(p: str) -> str:
            parts = fmt.parse_stage_input(p)
            if parts["stage"] != "summarize":
                return "I do not know."
            # the world's analyses deny every option but the right one ("... so it does not ...")
            right = [lab for lab, text in parts["analyses"] if " not " not in text and "cannot" not in text]
            return fmt.summarize_target(right[0] if right else "A")

        return [[Completion(reply(p))] for p in prompts]


def test_gold_stages_tell_how_much_a_better_recall_and_analyses_could_give(tmp_path):
    synth.write(SynthConfig(train=30, valid=2, test=12, options=3), tmp_path)
    test = load_benchmark("custom", str(tmp_path)).test
    oracle = RulesSampler(SamplerConfig(backend="rules", model=str(tmp_path)))
    alone = accuracy(run_chain(Clueless(), test, MODES["recall_analyze_summarize"]))["accuracy"]
    gold = GoldStages(Clueless(), oracle, ("recall", "analyze"))
    asked = []
    original = oracle.generate
    oracle.generate = lambda prompts, *a, **k: (asked.extend(prompts), original(prompts, *a, **k))[1]
    with_gold = accuracy(run_chain(gold, test, MODES["recall_analyze_summarize"]))["accuracy"]
    assert asked and all(not p.endswith("Summarize:") for p in asked)  # the summary stays the student's
    assert with_gold > alone


def test_stages_right_read_a_units_saved_test_chains_against_the_worlds_facts(tmp_path):
    check = Check(tmp_path, Settings())
    synth.write(SynthConfig(train=30, valid=2, test=6, options=3, key="link"), check.data_dir(0))
    world = synth.load_world(check.data_dir(0))
    test = load_benchmark("custom", str(check.data_dir(0))).test
    results = RunDir(check.seed_dir(0) / "llama" / FULL).eval("reflect-2").results
    results.parent.mkdir(parents=True)
    other = synth.explain(world, test[1])  # true facts, of another question: wrong here
    chains = []
    for i, q in enumerate(test):
        ex = synth.explain(world, q, style=i % synth.STYLES)
        # recall: right on the first 4; analyses: all right on the first 3, then each option given option A's
        analyses = [[lab, dict(ex.reasons)[lab if i < 3 else "A"]] for lab, _ in ex.reasons]
        chains.append({"id": q.id, "correct": synth.parse_stem(world, q.stem)[0] == "trait" or i == 0,
                       "chains": [{"recall": ex.knowledge if i < 4 else other.knowledge, "analyses": analyses}]})
    chains.append({"id": "synth-train-00000", "correct": True, "chains": [{"recall": "not counted", "analyses": []}]})
    write_jsonl(results, chains)
    right = stages_right(check, {"family": "llama", "seed": 0, "stage": "reflect-2"})
    # 3 questions x 3 right analyses, then 3 questions whose analyses are right for option A only: option A's
    # reason is their one text for every option
    kinds = [synth.parse_stem(world, q.stem)[0] for q in test]
    assert kinds[0] == "which" and "trait" in kinds  # right: every trait question, and the first which one
    assert right == {"test_recall_right": 4 / 6, "test_analyses_right": (9 + 3) / 18, "test_one_text": 3 / 6,
                     "test_trait": 1.0, "test_which": 1 / kinds.count("which")}
    assert stages_right(check, {"family": "llama", "seed": 0, "stage": FULL}) == {}  # not evaluated here


def test_a_rounds_self_generation_is_split_by_outcome_and_judged_against_the_world(tmp_path):
    """Reflect round 1's generations.jsonl: chains that reached the label and chains that did not, each side's
    recalls and analyses compared with the world's facts (the report line that says how true a chosen side is)."""
    check = Check(tmp_path, Settings())
    synth.write(SynthConfig(train=30, valid=2, test=6, options=3), check.data_dir(0))
    world = synth.load_world(check.data_dir(0))
    q, other = load_benchmark("custom", str(check.data_dir(0))).train[:2]
    ex, wrong = synth.explain(world, q, style=1), synth.explain(world, other)
    wrong_letter = next(lab for lab, _ in q.options if lab != q.answer)
    right_chain = {"recall": ex.knowledge, "analyses": [list(a) for a in ex.reasons], "prediction": q.answer}
    lucky = {"recall": wrong.knowledge, "analyses": [[lab, "so nothing."] for lab, _ in ex.reasons],
             "prediction": q.answer}  # right by chance: false stages
    failed = {"recall": ex.knowledge, "analyses": [[lab, "so nothing."] for lab, _ in ex.reasons],
              "prediction": wrong_letter}
    gens = RunDir(check.seed_dir(0) / "llama" / FULL).reflect(1).generations
    gens.parent.mkdir(parents=True)
    write_jsonl(gens, [{"qid": q.id, "question": q.to_dict(), "chains": [right_chain, lucky, failed]}])
    row = {"family": "llama", "seed": 0, "stage": "reflect-1"}
    assert selfgen_truth(check, row) == {"chosen_recall_true": 0.5, "chosen_analyses_true": 0.5,
                                         "rejected_recall_true": 1.0, "rejected_analyses_true": 0.0}
    assert selfgen_truth(check, {**row, "stage": "reflect-2"}) == selfgen_truth(check, {**row, "stage": FULL}) == {}
    line = aggregate([{**row, "test": 0.5, "selfgen": selfgen_truth(check, row)}], ["llama"], [0], rounds=1)
    meta = report_meta()
    assert "llama round 1: recall 0.50/1.00, analyses 0.50/0.00 (0)." in markdown(line, meta)
    recall_only = {k: v for k, v in selfgen_truth(check, row).items() if "recall" in k}  # an R+S student's chains
    line = aggregate([{**row, "test": 0.5, "selfgen": recall_only}], ["llama"], [0], rounds=1)
    assert "llama round 1: recall 0.50/1.00 (0)." in markdown(line, meta)


def test_the_report_says_what_the_self_taught_chains_added_and_how_true_they_were():
    row = {"family": "llama", "seed": 0, "stage": FULL, "test": 0.5}
    teacher = [{"self_taught": 266, "self_taught_recall_true": 0.7, "self_taught_analyses_true": 0.5},
               {"self_taught": 34, "self_taught_recall_true": 0.9, "self_taught_analyses_true": 0.7}]
    meta = report_meta(settings=dataclasses.asdict(Settings(self_taught_from="runs/w")),
                       teacher={"kept": 1, "questions": 1, "relabelled": 0} | self_taught_totals(teacher))
    assert ("Phase 1 was also taught 300 of the student's own chains that reached the label, one per untaught "
            "question where one did, sampled by the phase-1 models of runs/w in their first reflect round (true "
            "recalls 0.72, true analyses 0.52).") in markdown(aggregate([row], ["llama"], [0], rounds=0), meta)
    # 0.72, 0.52: weighted by chains, (266 x 0.7 + 34 x 0.9) / 300 and (266 x 0.5 + 34 x 0.7) / 300
    meta["settings"]["self_taught_filter"] = "truth"
    assert "reached the label and were true in every stage, one" in markdown(aggregate([row], ["llama"], [0],
                                                                                       rounds=0), meta)
    assert self_taught_totals([{"kept": 1}]) == {}
    assert "also taught" not in markdown(aggregate([row], ["llama"], [0], rounds=0), report_meta())


def test_a_self_taught_phase1_is_paired_with_the_source_phase1_it_extends(tmp_path):
    source = Check(tmp_path / "source", Settings())
    check = Check(tmp_path / "work", Settings(self_taught_from=str(source.work)))
    for c, right in ((source, [True, True, False, False, False, True]), (check, [True, False, True, True, True, True])):
        synth.write(SynthConfig(train=30, valid=2, test=6, options=3), c.data_dir(0))
        test = load_benchmark("custom", str(c.data_dir(0))).test
        results = RunDir(c.seed_dir(0) / "llama" / FULL).eval("sft").results
        results.parent.mkdir(parents=True)
        write_jsonl(results, [{"id": q.id, "correct": ok} for q, ok in zip(test, right, strict=True)])
    row = {"family": "llama", "seed": 0, "stage": FULL, "test": 0.83}
    assert self_taught_change(check, [row], ["llama"], [0]) == {0: {"fixed": 3, "broken": 1, "p": 0.625}}
    assert self_taught_change(check, [row | {"seed": 1}], ["llama"], [1]) == {}  # never evaluated
    assert self_taught_change(source, [row], ["llama"], [0]) == {}  # not a self-taught check
    meta = report_meta(settings=dataclasses.asdict(check.settings),
                       vs_source=self_taught_change(check, [row], ["llama"], [0]))
    assert (f"Against the phase 1 of {source.work} on the same test questions (fixed / broken, two-sided exact "
            "McNemar p; seed): +3 / -1 (p 0.62; 0).") in markdown(aggregate([row], ["llama"], [0], rounds=0), meta)


def test_mcnemar_p_is_exact_symmetric_and_one_when_nothing_changed():
    assert sign_test(0, 0) == 1.0
    assert sign_test(7, 2) == sign_test(2, 7) == pytest.approx(2 * (1 + 9 + 36) / 2**9)  # 0.180
    assert sign_test(10, 0) == pytest.approx(2 / 2**10)
    assert sign_test(5, 5) == 1.0  # capped: the two tails overlap at an even split


def test_the_paired_line_adds_all_seeds_together_where_no_single_seed_has_changes_enough():
    changes = {0: {"fixed": 3, "broken": 1}, 1: {"fixed": 4, "broken": 1}, 2: {"fixed": 2, "broken": 0}}
    rows = [{"family": "llama", "seed": s, "stage": "reflect-3", "test": 0.95, "steps": 9,
             "vs_phase1": c | {"p": sign_test(c["fixed"], c["broken"])}} for s, c in changes.items()]
    text = markdown(aggregate(rows, ["llama"], [0, 1, 2], rounds=3), report_meta(seeds=[0, 1, 2]))
    assert ("llama round 3: +3 / -1 (p 0.62; 0), +4 / -1 (p 0.38; 1), +2 / -0 (p 0.50; 2), "
            "+9 / -2 (p 0.07; all seeds).") in text  # sign_test(9, 2) = 0.065; no seed alone is below 0.38
    one = markdown(aggregate(rows[:1], ["llama"], [0], rounds=3), report_meta())
    assert "llama round 3: +3 / -1 (p 0.62; 0)." in one and "; all seeds)" not in one


def test_the_model_kept_is_the_one_validation_prefers_phase1_and_earlier_rounds_winning_ties():
    def unit(seed, stage, valid, test, **more):
        return {"family": "llama", "seed": seed, "stage": stage, "valid": valid, "test": test, "steps": 9, **more}

    gain = {"fixed": 9, "broken": 2, "p": sign_test(9, 2)}
    rows = [unit(0, FULL, 0.6, 0.70), unit(0, "reflect-1", 0.6, 0.75), unit(0, "reflect-2", 0.5, 0.60),
            unit(1, "reflect-10", 0.55, 0.40), unit(1, FULL, 0.4, 0.45), unit(1, "reflect-2", 0.55, 0.51, vs_phase1=gain),
            unit(2, FULL, 0.5, 0.5)]  # seed 2 has no rounds: nothing to choose
    kept = kept_by_valid(rows, ["llama"], [0, 1, 2], FULL)
    assert [(k["seed"], k["stage"]) for k in kept] == [(0, FULL), (1, "reflect-2")]  # round 2 before round 10
    text = markdown(aggregate(rows, ["llama"], [0, 1, 2], rounds=2), report_meta(seeds=[0, 1, 2], kept=kept))
    assert ("ties keep the earlier; seed): llama: phase 1 (valid 0.600): test 0.700 (0), "
            "round 2 (valid 0.550): test 0.450 -> 0.510, +9 / -2 (p 0.07) (1), +9 / -2 (p 0.07; all seeds).") in text
    assert kept_by_valid(rows, ["llama"], [2], FULL) == []  # no rounds, no line
    assert "Kept by validation" not in markdown(aggregate(rows, ["llama"], [2], rounds=2), report_meta(kept=[]))


def test_a_reflect_round_is_compared_with_its_phase1_model_on_the_same_test_questions(tmp_path):
    check = Check(tmp_path, Settings())
    synth.write(SynthConfig(train=30, valid=2, test=6, options=3), check.data_dir(0))
    test = load_benchmark("custom", str(check.data_dir(0))).test
    before, after = [True, True, False, False, False, True], [True, False, True, True, False, True]
    for tag, right in (("sft", before), ("reflect-1", after)):
        results = RunDir(check.seed_dir(0) / "llama" / FULL).eval(tag).results
        results.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(results, [{"id": q.id, "correct": c} for q, c in zip(test, right, strict=True)]
                    + [{"id": "synth-train-00000", "correct": not right[0]}])  # the training sample's: not counted
    row = {"family": "llama", "seed": 0, "stage": "reflect-1"}
    assert held_out_outcomes(check, row) == {q.id: c for q, c in zip(test, after, strict=True)}
    assert reflect_change(check, row) == {"fixed": 2, "broken": 1, "p": 1.0}
    assert reflect_change(check, {**row, "stage": "reflect-2"}) is None  # never evaluated
    assert paired_change({"a": False, "b": True}, {"a": True, "c": False}) == {"fixed": 1, "broken": 0, "p": 1.0}
    lines = aggregate([{**row, "test": 0.67, "steps": 9, "vs_phase1": reflect_change(check, row)}], ["llama"], [0],
                      rounds=1)
    meta = report_meta()
    assert "llama round 1: +2 / -1 (p 1.00; 0)." in markdown(lines, meta)
    # a report rewritten from the cache (--report) does not pass its own few seconds off as the run's time
    assert "Runtime: 1.0 min" in markdown(lines, meta)
    assert "rewritten with --report from the work folder's cache (0 units" in markdown(lines, meta | {"seconds": None})
    # a partial teacher and reflection over every question are said where the teacher and the rounds are
    assert "training question(s) x" in markdown(lines, meta) and "asked about" not in markdown(lines, meta)
    partial = markdown(lines, meta | {"settings": meta["settings"] | {"taught": 150, "reflect_over": "all"}})
    assert "every training question(s) (those without a rationale too, by their label) x" in partial
    assert "Teacher: rules, asked about the first 150 training questions of a seed only, error rate" in partial


def test_fresh_test_questions_continue_the_held_out_split_without_repeating_it():
    s = Settings(test=40)
    _, split = synth.build(synth_config(s, 0))
    asked = split["test"]
    fresh = fresh_test_questions(s, 0, 200)
    assert 150 < len(fresh) <= 200 and not {q.id for q in fresh} & {q.id for q in asked}
    assert not {(q.stem, q.options) for q in fresh} & {(q.stem, q.options) for q in asked}
    world = synth.make_world(synth_config(s, 0))
    pairs = {tuple(p) for p in world.pairs["test"]}
    assert {synth_pair(world, q) for q in fresh} <= pairs  # the same held-out pairs, asked anew
    _, longer = synth.build(synth_config(dataclasses.replace(s, test=240), 0))
    assert longer["test"][:40] == asked and longer["train"] == split["train"]  # nothing the check used moves


def synth_pair(world, q) -> tuple[str, str]:
    """The (entity, property id) a world question asks about, from its stem and its right option."""
    kind, what = synth.parse_stem(world, q.stem)
    right = dict(q.options)[q.answer]
    return (right, what) if kind == "which" else (what, world.by_phrase[right].id)


def test_every_setting_is_a_flag_whose_help_says_what_it_does():
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                          env=os.environ | {"COLUMNS": "200"})  # argparse may wrap a help at its hyphens
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps the help
    for f in dataclasses.fields(Settings):
        if f.name == "student":  # a description of the built students, not a setting
            continue
        assert f.metadata.get("help"), f"Settings.{f.name} has no help"
        assert f"--{f.name.replace('_', '-')} " in text and " ".join(f.metadata["help"].split()) in text
    assert "--reflect-lr REFLECT_LR reflection (RPO) learning rate (default: 0.0001)" in text
    assert "(default: None)" not in text  # a None default is said in words


@pytest.mark.parametrize("flag, said", [(["--key", "bogus"], "--key bogus"),
                                        (["--reflect-from", "summarize"], "needs a phase-1 mode with a recall"),
                                        (["--error-scope", "always"], "per 'sample' or per 'question'"),
                                        (["--reflect-over", "some"], "on 'taught' or 'all' training"),
                                        (["--reflect-mode", "summary"], "pairs are one of ['recall', 'analyze'"),
                                        (["--taught", "601"], "covers 1..600 (--train)"),
                                        (["--options", "5"], "5 options need as many categories"),
                                        (["--unseen", "1"], "--taught must be at most"),
                                        (["--unseen", "1", "--taught", "500"], "--taught must be at most"),
                                        (["--pretrain", "5"], "only causal students are pretrained"),
                                        (["--refer", "she"], "--refer she"),
                                        (["--self-taught-from", "nowhere"], "not a learning-check work folder"),
                                        (["--self-taught-filter", "luck"], "by their 'label' or by the world's")])
def test_bad_world_or_reflection_flags_are_one_line_before_the_work_folder_is_touched(tmp_path, flag, said):
    done = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp_path / "work"), *flag],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and said in done.stderr.strip().splitlines()[-1], done.stderr
    assert not (tmp_path / "work").exists()


def test_the_unseen_entities_test_accuracy_reads_the_questions_that_name_them(tmp_path):
    check = Check(tmp_path, Settings())
    synth.write(SynthConfig(train=40, valid=2, test=20, options=3, unseen=1), check.data_dir(0))
    world = synth.load_world(check.data_dir(0))
    test = load_benchmark("custom", str(check.data_dir(0))).test
    results = RunDir(check.seed_dir(0) / "llama" / FULL).eval("reflect-1").results
    results.parent.mkdir(parents=True)
    # right on every question that names no unseen entity, and on every other one of those that do
    named = [q.id for q in test if synth.mentions(q, world.unseen)]
    assert 0 < len(named) < len(test)
    write_jsonl(results, [{"id": q.id, "correct": q.id not in named or named.index(q.id) % 2 == 0,
                           "chains": [{"recall": "", "analyses": [["A", ""]]}]} for q in test])
    right = stages_right(check, {"family": "llama", "seed": 0, "stage": "reflect-1"})
    assert right["test_unseen"] == sum(i % 2 == 0 for i in range(len(named))) / len(named)


def test_a_pretrained_student_has_written_every_name_but_was_told_no_fact(tmp_path):
    """--pretrain: a few causal-LM steps on stems beside other questions' options; the model is saved in place of
    the from-scratch one and learned (its weights moved), from text in which no stem sits beside its own options."""
    import torch

    from tinythinker_ray.models import load_student

    check = Check(tmp_path, Settings(train=40, valid=4, test=6, pretrain=3))
    synth.write(synth_config(check.settings, 0), check.data_dir(0))
    train = load_benchmark("custom", str(check.data_dir(0))).train
    texts = pretrain_texts(train, 0)
    assert len(texts) == 40 and not {f"{q.stem}\n{fmt.options_line(q.options)}" for q in train} & set(texts)
    assert sorted(t.split("\n")[0] for t in texts) == sorted(q.stem for q in train)
    pretrained, _ = load_student(student(check, "llama", 0))
    scratch, _ = load_student(str(tmp_path / "models" / "llama-0-raw"))
    assert not torch.equal(pretrained.get_input_embeddings().weight, scratch.get_input_embeddings().weight)
    with pytest.raises(ConfigError, match="causal students"):
        student(check, "t5", 0)


def test_a_partial_teacher_leaves_the_untaught_questions_to_reflection_over_all(tmp_path, ray_local):
    """--taught 8 of 40: the rule teacher writes rationales for the first 8 training questions only; reflection
    self-generates on those 8 by default and on all 40 with --reflect-over all (the world's labels)."""
    from tinythinker_ray.reflect.iterate import training_questions
    from tinythinker_ray.world.check import prepare_seed

    small = {"train": 40, "valid": 4, "test": 6, "train_sample": 4, "teacher_samples": 2}
    check = Check(tmp_path, Settings(**small, taught=8))
    prepare_seed(check, 0)
    assert check.cache.get("teacher", 0, "teach")["questions"] == 8
    run = check.mode_dir("llama", 0, FULL)
    assert len(training_questions(check.config(0, run))) == 8
    every = training_questions(Check(tmp_path, Settings(**small, taught=8, reflect_over="all")).config(0, run))
    world = load_benchmark("custom", str(check.data_dir(0))).train
    assert [(q.id, q.answer) for q in every[8:]] == [(q.id, q.answer) for q in world[8:]] and len(every) == 40
    assert check.config(0, run).reflect.mode == "recall_analyze"  # the authors' pairs on both stages by default
    assert Check(tmp_path, Settings(**small, reflect_mode="analyze")).config(0, run).reflect.mode == "analyze"
    assert check.config(2, run).reflect.seed == 2  # a replicate's --reflect-seed moves reflection's seed only
    other = Check(tmp_path, Settings(**small, reflect_seed=1)).config(2, run)
    assert (other.reflect.seed, other.seed, other.sft.seed) == (1002, 2, 2)


def test_a_report_from_a_work_folder_with_nothing_run_says_so_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp_path / "work"), "--report", "--seeds", "0,1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "has no units of seed(s) [0, 1] yet" in done.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_learning_check_runs_end_to_end_and_writes_its_report(tmp_path):
    """Two seeds as two Ray Tune trials of one local Ray; the full mode is diagnosed and gets a reflect round."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--work", str(tmp_path / "work"), "--out", str(out), "--families", "t5",
           "--seeds", "0,1", "--modes", "summarize,recall_analyze_summarize", "--rounds", "1", "--steps", "10",
           "--train", "80", "--valid", "6", "--test", "12", "--train-sample", "6", "--teacher-samples", "2",
           "--reflect-questions", "8", "--reflect-samples", "2", "--reflect-cycles", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "t5 seed 1 summarize: test" in log and "t5 seed 0 recall_analyze_summarize: test" in log
    assert list((tmp_path / "work" / "tune").glob("grid-*"))  # the grid ran as a Tune experiment
    report = json.loads((out / "learning.json").read_text())
    lines = {line["stage"]: line for line in report["table"]}
    assert set(lines) == {"summarize", "recall_analyze_summarize", "reflect-1"}
    assert all(line["seeds"] == [0, 1] and 0.0 <= line["test"] <= 1.0 for line in lines.values())
    full = lines["recall_analyze_summarize"]
    for key in ("test_recall_right", "test_analyses_right", "test_gold_recall", "test_gold_analyses", "train_right_recalls"):
        assert 0.0 <= full[key] <= 1.0, key
    t5 = json.loads((tmp_path / "work" / "models" / "t5-0" / "config.json").read_text())
    assert (t5["num_layers"], t5["num_decoder_layers"]) == (2, 2)  # the Llama's 4 blocks, split
    assert report["meta"]["oracle"] > 0.9  # the rule teacher as the student answers its own world
    md = (out / "learning.md").read_text()
    assert "| t5 | S | 10 |" in md and "chance **33.3%**" in md and "gold recall" in md and "analyses right" in md
    assert "Each round's self-generation (by the model it started from)" in md  # read from the round's files
    assert "Kept by validation accuracy" in md and "t5: " in md.split("Kept by validation accuracy", 1)[1]
    assert (out / "learning.png").stat().st_size > 1000
    # a rerun finds every unit in the cache and trains nothing
    units = (tmp_path / "work" / "results.jsonl").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "work" / "results.jsonl").read_text() == units
    assert f"({len(units.splitlines())} units reused" in (out / "learning.md").read_text()
    # the cache is keyed by unit only: other training settings are refused, not mixed in
    other = subprocess.run([*cmd, "--lr", "5e-3"], capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "lr: 0.003 -> 0.005" in other.stderr and "--fresh" in other.stderr
    # other reflection settings on the same phase-1 models: the rounds run again in a copy, phase 1 is reused
    beta = tmp_path / "beta"
    done = subprocess.run([*cmd, "--work", str(beta), "--out", str(tmp_path / "beta-out"), "--phase1-from",
                           str(tmp_path / "work"), "--reflect-beta", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {Cache.key(r): r for r in map(json.loads, units.splitlines())}
    for r in read_jsonl(beta / "results.jsonl"):
        if r["stage"] == "reflect-1":  # trained now (round folders are not copied), into the copy
            assert r["best"].startswith(str(beta))
            assert (beta / f"seed{r['seed']}" / "t5" / FULL / "reflect" / "iter_1" / "record.json").exists()
        else:
            assert json.dumps(r) == json.dumps(rows[Cache.key(r)]).replace(str(tmp_path / "work"), str(beta))
    assert json.loads((beta / SETTINGS_FILE).read_text())["reflect_beta"] == 2.0
    # the same command with a larger --rounds continues the rounds there: the units kept, round 2 added
    before = list(read_jsonl(beta / "results.jsonl"))
    more = subprocess.run([*cmd, "--work", str(beta), "--out", str(tmp_path / "beta-out"), "--phase1-from",
                           str(tmp_path / "work"), "--reflect-beta", "2", "--rounds", "2"],
                          capture_output=True, text=True, timeout=600)
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    after = list(read_jsonl(beta / "results.jsonl"))
    assert after[: len(before)] == before
    assert sorted((r["seed"], r["stage"]) for r in after[len(before):]) == [(0, "reflect-2"), (1, "reflect-2")]
    fewer = subprocess.run([*cmd, "--work", str(beta), "--reflect-beta", "2"], capture_output=True, text=True,
                           timeout=120)  # back to 1 round: refused, as the report would mix both
    assert fewer.returncode == 2 and "rounds: 2 -> 1" in fewer.stderr
    # the finished check's models on fresh held-out questions (benchmarks/retest.py), resumable
    retest = [sys.executable, str(SCRIPT.parent / "retest.py"), "--work", str(tmp_path / "work"), "--family", "t5",
              "--questions", "12", "--rounds", "1", "--out", str(tmp_path / "fresh.json")]
    done = subprocess.run(retest, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    fresh = json.loads((tmp_path / "fresh.json").read_text())
    assert sorted((r["seed"], r["stage"]) for r in fresh["runs"]) == [(0, FULL), (0, "reflect-1"), (1, FULL),
                                                                      (1, "reflect-1")]
    for r in fresh["runs"]:
        assert 0 < r["test_n"] <= 12 and r["check_test"] == rows[("t5", r["seed"], r["stage"])]["test"]
        assert ("vs_phase1" in r) == (r["stage"] == "reflect-1")
    answers = tmp_path / "work" / "seed0" / "t5" / FULL / "eval" / "reflect-1-fresh12" / "results.jsonl"
    written, stamp = answers.read_text(), answers.stat().st_mtime_ns
    assert not any(json.loads(line)["id"] in {q.id for q in load_benchmark(
        "custom", str(tmp_path / "work" / "seed0" / "data")).test} for line in written.splitlines())
    again = subprocess.run(retest, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and answers.read_text() == written
    assert answers.stat().st_mtime_ns == stamp  # every answer was kept and none asked again
    other = subprocess.run([*retest, "--family", "llama"], capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "has no llama units" in other.stderr


def test_the_progress_line_of_a_round_that_stopped_says_so():
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning_check_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    row = {"family": "llama", "seed": 2, "stage": "reflect-1", "test": 0.7167, "train": 0.7917}
    assert script.unit_line(row) == "llama seed 2 reflect-1: test 0.717 train 0.792"
    stopped = script.unit_line(row | {"stopped": "too few preference pairs to train"})
    assert stopped.endswith("train 0.792 (stopped: too few preference pairs to train)")
    assert script.unit_line({**row, "train": None}) == "llama seed 2 reflect-1: test 0.717"
