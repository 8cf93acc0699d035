"""The learning check's report: a table (mean ± std over seeds per student and stage, with the diagnostics), a
bar chart, and the JSON of every unit. Pure over the results cache's rows; benchmarks/learning.py writes it."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections import Counter
from pathlib import Path

from ..core.modes import FULL, MODES
from ..data.loaders import read_questions
from ..reflect.pairs import paired_stages
from ..rundir import RunDir
from .check import (
    ROUND,
    Check,
    held_out_outcomes,
    is_round,
    round_number,
    round_stage,
    selfgen_truth,
    stages_right,
)

SHORT = {"summarize": "S", "recall_summarize": "R+S", "analyze_summarize": "A+S", FULL: "R+A+S"}
MD_KEEP = "## Interpretation"  # what follows this heading in an existing learning.md is kept
DIAGNOSTICS = (
    "test_recall_right", "test_analyses_right", "test_one_text", "test_gold_recall", "test_gold_analyses",
    "train_right_recalls", "test_trait", "test_which", "test_unseen")


def sign_test(fixed: int, broken: int) -> float:
    """Two-sided exact p of McNemar's test: how likely a split of the changed answers at least this uneven would be
    if each change were as likely a fix as a break (what two runs that differ only by noise give)."""
    n = fixed + broken
    tail = sum(math.comb(n, k) for k in range(min(fixed, broken) + 1)) / 2**n
    return min(1.0, 2 * tail)


def change(fixed: int, broken: int) -> dict:
    """A paired comparison's result: the questions the second model fixed and broke, and McNemar's p of that split."""
    return {"fixed": fixed, "broken": broken, "p": sign_test(fixed, broken)}


def paired_change(before: dict[str, bool], after: dict[str, bool]) -> dict:
    """Two models on the same questions: how many the second fixed and broke, and McNemar's p of that split. Paired,
    it tells a real gain from noise far better than two accuracies' difference does: questions both get right or
    both get wrong carry no noise."""
    common = before.keys() & after.keys()
    fixed = sum(after[q] and not before[q] for q in common)
    broken = sum(before[q] and not after[q] for q in common)
    return change(fixed, broken)


def pooled(changes) -> dict:
    """Several seeds' paired changes as one test: their fixed and broken questions summed (the seeds' questions are
    disjoint). With a phase 1 near the ceiling one seed's test has too few changed questions for any p to be small;
    together they can say whether the rounds gain at all."""
    return change(*(sum(c[k] for c in changes) for k in ("fixed", "broken")))


def paired_text(per_seed: dict) -> str:
    """Paired changes per seed, then (more than one seed) all seeds' changed questions together."""
    per = {**per_seed, **({"all seeds": pooled(per_seed.values())} if len(per_seed) > 1 else {})}
    return ", ".join(f"+{c['fixed']} / -{c['broken']} (p {c['p']:.2f}; {seed})" for seed, c in per.items())


def kept_by_valid(rows: list[dict], families: list[str], seeds: list[int], reflect_from: str) -> list[dict]:
    """Per (family, seed) with reflect rounds: of the phase-1 model and its rounds, the one with the best validation
    accuracy (ties keep the earlier, fewer rounds): what a user who never sees the test split would ship. Its
    test accuracy, and its paired change against phase 1 when it is a round, say what reflection gave in the end."""
    kept = []
    for family in families:
        for seed in seeds:
            mine = {r["stage"]: r for r in rows if r["family"] == family and r["seed"] == seed}
            candidates = [mine[s] for s in (reflect_from, *sorted(filter(is_round, mine), key=round_number))
                          if s in mine and mine[s].get("valid") is not None]
            if len(candidates) < 2 or reflect_from not in mine:
                continue
            best = max(candidates, key=lambda r: r["valid"])  # max keeps the first of equals
            kept.append({"family": family, "seed": seed, "stage": best["stage"], "valid": best["valid"],
                         "test": best["test"], "phase1_test": mine[reflect_from]["test"],
                         "vs_phase1": best.get("vs_phase1")})
    return kept


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(rows: list[dict], families: list[str], seeds: list[int], rounds: int) -> list[dict]:
    """One line per (family, stage): mean and std over seeds of every score, per-seed test accuracy in seed order."""
    lines = []
    for family in families:
        for stage in [*MODES, *(round_stage(i) for i in range(1, rounds + 1))]:
            got = sorted((r for r in rows if r["family"] == family and r["stage"] == stage and r["seed"] in seeds),
                         key=lambda r: r["seed"])
            if not got:
                continue
            line = {"family": family, "stage": stage, "seeds": [r["seed"] for r in got],
                    "test_per_seed": [r["test"] for r in got], "train_per_seed": [r.get("train") for r in got],
                    "steps": max(r.get("steps") or 0 for r in got), "stopped": sum(bool(r.get("stopped")) for r in got),
                    "pairs": {r["seed"]: r["pairs"] for r in got if r.get("pairs")},
                    "vs_phase1": {r["seed"]: r["vs_phase1"] for r in got if r.get("vs_phase1")},
                    "selfgen": {r["seed"]: r["selfgen"] for r in got if r.get("selfgen")}}
            for key in ("test", "train", "valid", *DIAGNOSTICS):
                vals = [r[key] for r in got if r.get(key) is not None]
                if vals:
                    line[key], line[f"{key}_std"] = mean_std(vals)
            lines.append(line)
    return lines


def label(stage: str, reflect_from: str = FULL) -> str:
    return SHORT.get(stage, stage.replace(ROUND, f"{SHORT[reflect_from]} + reflect round "))


def _cell(line: dict, key: str, bold: bool = False) -> str:
    if key not in line:
        return "-"
    text = f"{line[key]:.3f} ± {line[f'{key}_std']:.3f}"
    return f"**{text}**" if bold else text


def markdown(lines: list[dict], meta: dict) -> str:
    a = meta["settings"]
    base = a.get("reflect_from", FULL)
    paired = a.get("reflect_mode", "recall_analyze")  # a check recorded before the setting paired both stages
    out = ["# Learning check", "",
           f"Synthetic held-out reasoning task (`benchmarks/learning.py`), {a['options']} options: chance "
           f"**{1 / a['options']:.1%}**; the rule oracle through the same chain evaluation: **{meta['oracle']:.1%}**; "
           f"always answering a seed's most frequent test letter: **{meta['majority']:.1%}** (mean over seeds). "
           f"Students built from scratch; seeds {meta['seeds']} (each seed: its own world, teacher samples and "
           f"student init). Test = combinations never asked in training; train = the first {a['train_sample']} "
           "training questions (seen combinations). Diagnostics (test): the chain with the world's gold recall "
           "given, and with gold recall and analyses given (only the summary is the student's); recall right = the "
           "share of test questions whose greedy recall is a true general fact of the world; analyses right = "
           "the share of their per-option analyses that are the world's reason for that option; one text = the "
           "share of test questions whose analyses write one text for every option (no look-up of the option by "
           "its letter); trait / which = the test accuracy on each kind of question; right recalls = "
           f"the share of {a['reflect_samples']} recalls sampled at temperature {a['reflect_temperature']:g} per "
           "training question whose chain reaches the label (what self-generation starts from)."
           + (" Unseen = the accuracy on the test questions that name an entity no rationale mentions "
              f"({a['unseen']} per category: only the labels of the last training questions teach their facts)."
              if a.get("unseen") else ""), "",
           "| student | stage | steps | test (mean ± std) | per seed | train | recall right | analyses right "
           "| one text | gold recall | gold recall + analyses | right recalls | trait | which |"
           + (" unseen |" if a.get("unseen") else ""),
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if a.get("unseen") else "")]
    for ln in lines:
        stopped = f" ({ln['stopped']} stopped)" if ln["stopped"] else ""
        out.append(f"| {ln['family']} | {label(ln['stage'], base)}{stopped} | {ln['steps']} | {_cell(ln, 'test', True)} | "
                   f"{', '.join(f'{v:.3f}' for v in ln['test_per_seed'])} | {_cell(ln, 'train')} | "
                   f"{_cell(ln, 'test_recall_right')} | {_cell(ln, 'test_analyses_right')} | "
                   f"{_cell(ln, 'test_one_text')} | {_cell(ln, 'test_gold_recall')} | {_cell(ln, 'test_gold_analyses')} | "
                   f"{_cell(ln, 'train_right_recalls')} | {_cell(ln, 'test_trait')} | {_cell(ln, 'test_which')} |"
                   + (f" {_cell(ln, 'test_unseen')} |" if a.get("unseen") else ""))
    rounds = [ln for ln in lines if ln["pairs"]]
    if rounds:
        stages = paired_stages((p for ln in rounds for p in ln["pairs"].values()), key="{}")
        built = "built for both, " if paired == "analyze" else ""  # analyze pairs need the recall pairs' recalls
        only = "" if paired.startswith("recall_analyze") else f"; {built}trained on the {paired} pairs only"
        out += ["", f"Preference pairs ({' / '.join(stages)}, seed{only}): " + "; ".join(
            f"{ln['family']} round {round_number(ln['stage'])}: "
            + ", ".join("/".join(str(p.get(st, "-")) for st in stages) + f" ({seed})"
                        for seed, p in ln["pairs"].items()) for ln in rounds)
            + "."]
    truths = [ln for ln in lines if ln.get("selfgen")]
    if truths:
        def shares(t: dict) -> str:  # the stages the chains have (an R+S student's have no analyses)
            return ", ".join(f"{st} {t[f'chosen_{st}_true']:.2f}/{t[f'rejected_{st}_true']:.2f}"
                             for st in ("recall", "analyses") if f"chosen_{st}_true" in t and f"rejected_{st}_true" in t)

        out += ["", "Each round's self-generation (by the model it started from): share of stages true to the world "
                    "in chains that reached the label / that did not (seed): " + "; ".join(
            f"{ln['family']} round {round_number(ln['stage'])}: " + ", ".join(
                f"{shares(t)} ({seed})" for seed, t in ln["selfgen"].items())
            for ln in truths) + "."]
    changed = [ln for ln in lines if ln["vs_phase1"]]
    if changed:
        out += ["", f"Each reflect round against the {SHORT[base]} model the rounds started from, on the same test "
                    "questions (fixed / broken, two-sided exact McNemar p; seed): " + "; ".join(
            f"{ln['family']} round {round_number(ln['stage'])}: {paired_text(ln['vs_phase1'])}" for ln in changed) + "."]
    if meta.get("kept"):
        def kept(k: dict) -> str:
            if not is_round(k["stage"]):
                return f"phase 1 (valid {k['valid']:.3f}): test {k['test']:.3f} ({k['seed']})"
            c = k["vs_phase1"]
            paired = f", +{c['fixed']} / -{c['broken']} (p {c['p']:.2f})" if c else ""
            return (f"round {round_number(k['stage'])} (valid {k['valid']:.3f}): test {k['phase1_test']:.3f} -> "
                    f"{k['test']:.3f}{paired} ({k['seed']})")

        def family_kept(family: str) -> str:  # per seed, then the seeds' changes together (a kept phase 1: none)
            mine = [k for k in meta["kept"] if k["family"] == family]
            changes = [k["vs_phase1"] for k in mine if is_round(k["stage"]) and k["vs_phase1"]]
            together = pooled(changes) if len(mine) > 1 and changes else None
            return f"{family}: " + ", ".join(map(kept, mine)) + (
                f", +{together['fixed']} / -{together['broken']} (p {together['p']:.2f}; all seeds)" if together else "")

        out += ["", f"Kept by validation accuracy (of the {SHORT[base]} model and its rounds, the one a user who never "
                    "sees the test split would ship; ties keep the earlier; seed): " + "; ".join(
            map(family_kept, dict.fromkeys(k["family"] for k in meta["kept"]))) + "."]
    t = meta["teacher"]
    budget = f"{a['steps']} optimizer steps each" if a["steps"] else f"{a['epochs']:g} epochs of each mode's data"
    t5_lr = f" (T5: {a['t5_lr']})" if a.get("t5_lr") else ""
    over = " (those without a rationale too, by their label)" if a.get("reflect_over", "taught") == "all" else ""
    paired_only = {"recall_analyze": "", "recall_analyze_summarize": ", summary pairs too (our addition)"}.get(
        paired, f", {paired} pairs only")
    replicate = f", reflect seed {a['reflect_seed']}" if a.get("reflect_seed") else ""
    taught = f"asked about the first {a['taught']} training questions of a seed only, " if a.get("taught") else ""
    reflection = ("no reflect rounds" if a.get("rounds") == 0 else  # e.g. a self-taught check: its settings unused
                  f"reflect rounds = phase 2 (RPO) on the {SHORT[base]} model, each from and against the previous "
                  f"best: {a['reflect_questions'] or 'every'} training question(s){over} x {a['reflect_samples']} "
                  f"samples at temperature {a['reflect_temperature']:g}, steps sized from the pairs x "
                  f"{a['reflect_cycles']} cycles, lr {a['reflect_lr']}, beta {a['reflect_beta']}, alpha "
                  f"{a['reflect_alpha']}{paired_only}{replicate}")
    out += ["", f"S = summarize only, R = recall, A = analyze (phase-1 modes, {budget}, batch {a['batch_size']}, lr "
                f"{a['lr']}{t5_lr}, interval {a['interval']}); {reflection}.",
            f"Teacher: rules, {taught}error rate {a['error_rate']} per {a.get('error_scope', 'sample')}, "
            f"{a['teacher_samples']} samples at temperature "
            f"{a['teacher_temperature']:g}, keeps {a['augment']} per question; over all seeds it kept {t['kept']} "
            f"rationales for {t['questions']} questions and relabelled {t['relabelled']}."
            + (f" Phase 1 was also taught {t['self_taught']} of the student's own chains that reached the label"
               + (" and were true in every stage" if a.get("self_taught_filter") == "truth" else "")
               + f", one per untaught question where one did, sampled by the phase-1 models of {a['self_taught_from']} in "
               f"their first reflect round (true recalls {t['self_taught_recall_true']:.2f}, true analyses "
               f"{t['self_taught_analyses_true']:.2f})." if t.get("self_taught") else "")
            + (f" Against the phase 1 of {a['self_taught_from']} on the same test questions (fixed / broken, two-sided "
               f"exact McNemar p; seed): {paired_text(meta['vs_source'])}." if meta.get("vs_source") else ""),
            f"World: {a['categories']} categories, {a['entities']} entities, {a['properties']} properties, general "
            f"facts of kind '{a.get('key', 'fact')}'"
            + (f", {a['unseen']} entities per category only in label-only questions" if a.get("unseen") else "")
            + (", rationales refer to the entity they reason about as 'it'" if a.get("refer", "name") == "it" else "")
            + (f"; students pretrained {a['pretrain']} causal-LM steps on the training questions' text without answers"
               if a.get("pretrain") else "") + "; "
            f"{a['train']} / {a['valid']} / {a['test']} train / valid / test questions.",
            (f"Runtime: {meta['seconds'] / 60:.1f} min on {meta['machine']} ({meta['cached']} units reused from an "
             "earlier invocation or copied with --phase1-from; " if meta["seconds"] is not None else
             f"Runtime: this report was rewritten with --report from the work folder's cache ({meta['cached']} "
             f"units, run on {meta['machine']}; ")
            + f"all units together took {meta['unit_seconds'] / 60:.1f} min, "
            f"{meta['unit_train_seconds'] / 60:.1f} of them phase-1 optimizer steps)."]
    return "\n".join(out) + "\n"


def chart(lines: list[dict], meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(ln["family"] for ln in lines))
    stages = list(dict.fromkeys(ln["stage"] for ln in lines))
    width = 0.8 / max(len(families), 1)
    fig, ax = plt.subplots(figsize=(max(1.3 * len(stages) + 2, 6), 4))  # 6 in: the title fits a one-bar chart
    for i, family in enumerate(families):
        got = {ln["stage"]: ln for ln in lines if ln["family"] == family}
        xs = [j + (i - (len(families) - 1) / 2) * width for j, s in enumerate(stages) if s in got]
        ax.bar(xs, [got[s]["test"] for s in stages if s in got], width,
               yerr=[got[s]["test_std"] for s in stages if s in got], capsize=3, label=f"tiny {family}")
    ax.axhline(1 / meta["settings"]["options"], color="gray", linestyle="--", label="chance")
    ax.axhline(meta["majority"], color="gray", linestyle=":", label="most frequent letter")
    ax.set_xticks(range(len(stages)), [label(s, meta["settings"].get("reflect_from", FULL)).replace(" + reflect round ", "\n+ reflect ")
                                   for s in stages])
    ax.set_ylabel(f"held-out test accuracy (mean ± std, {len(meta['seeds'])} seeds)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Learning check: synthetic held-out combinations")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reflect_change(check, row: dict) -> dict | None:
    """A reflect round's paired change against the phase-1 model the rounds started from (None: an evaluation is
    not on disk)."""
    start = held_out_outcomes(check, {**row, "stage": check.settings.reflect_from})
    end = held_out_outcomes(check, row)
    return paired_change(start, end) if start and end else None


def self_taught_change(check, rows: list[dict], families: list[str], seeds: list[int]) -> dict:
    """With --self-taught-from: per seed, this phase-1 model against the source's (taught the teacher's rationales
    only) on the same test questions; {} without the setting or an evaluation on disk."""
    s = check.settings
    if not s.self_taught_from:
        return {}
    source, out = Check(Path(s.self_taught_from), s), {}
    for r in rows:
        # one family, so the result is keyed by seed: the first (by default the Llama, whose chains teach)
        if r["family"] in families[:1] and r["seed"] in seeds and r["stage"] == s.reflect_from:
            before, after = held_out_outcomes(source, r), held_out_outcomes(check, r)
            if before and after:
                out[r["seed"]] = paired_change(before, after)
    return dict(sorted(out.items()))


def majority_share(teach_run: Path) -> float:
    """What always answering one letter scores on the seed's test split (at best): the real floor, since a student
    that learned nothing but the answer format tends to do exactly that."""
    labels = [q.answer for q in read_questions(RunDir(teach_run).teach.questions("test"))]
    return max(Counter(labels).values()) / len(labels)


def self_taught_totals(teacher: list[dict]) -> dict:
    """The self-taught chains over the seeds (world/self_taught.py): their count and shares of true stages, each
    seed weighted by its number of chains (the share of all chains added, not a mean of per-seed shares)."""
    rows = [r for r in teacher if r.get("self_taught")]
    if not rows:
        return {}
    chains = [r["self_taught"] for r in rows]
    return {"self_taught": sum(chains), **{k: statistics.fmean([r[k] for r in rows], weights=chains)
                                           for k in ("self_taught_recall_true", "self_taught_analyses_true")}}


def write_report(check, rows: list[dict], families: list[str], seeds: list[int], seconds: float | None, cached: int,
                 out: Path) -> str:
    """learning.{json,md,png} in `out` from the cache's rows; a human-written interpretation is kept."""
    import dataclasses

    settings = dataclasses.asdict(check.settings)
    rows = [r | stages_right(check, r) if r["family"] in families and "test" in r else r for r in rows]
    rows = [r | {"vs_phase1": reflect_change(check, r), "selfgen": selfgen_truth(check, r)}
            if is_round(r["stage"]) else r for r in rows]
    lines = aggregate(rows, families, seeds, check.settings.rounds)
    teacher = [r for r in rows if r["family"] == "teacher" and r["seed"] in seeds]
    oracles = [r["test"] for r in rows if r["family"] == "oracle" and r["seed"] in seeds]
    mine = [r for r in rows if r["seed"] in seeds and r["family"] in (*families, "teacher")]
    meta = {"settings": settings, "seeds": seeds, "seconds": seconds, "cached": cached,
            "kept": kept_by_valid(rows, families, seeds, check.settings.reflect_from),
            "oracle": statistics.fmean(oracles) if oracles else float("nan"),
            "majority": statistics.fmean(majority_share(check.teach_run(s)) for s in seeds),
            "teacher": {k: sum(r[k] for r in teacher) for k in ("questions", "kept", "relabelled")}
            | self_taught_totals(teacher),
            "vs_source": self_taught_change(check, rows, families, seeds),
            "unit_seconds": sum(r.get("seconds") or 0 for r in mine),
            "unit_train_seconds": sum(r.get("train_seconds") or 0 for r in mine),
            "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning.json").write_text(json.dumps({"meta": meta, "table": lines, "runs": rows}, indent=2) + "\n")
    md = markdown(lines, meta)
    old = out / "learning.md"
    if old.exists() and MD_KEEP in old.read_text():
        md += "\n" + MD_KEEP + old.read_text().split(MD_KEEP, 1)[1]
    old.write_text(md)
    chart(lines, meta, out / "learning.png")
    return md
