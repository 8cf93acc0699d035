"""Reflection's run-to-run noise: the same reflection command run several times from the same phase-1 models
(`benchmarks/learning.py --phase1-from`), compared per seed. Only reflection's own randomness differs between the
replicates (the recalls and analyses it samples), so the spread of a round's test accuracy over them is the noise
a gain has to clear; the paired McNemar p of each replicate (the test questions' noise) is kept beside it.

Pure over the rows of the learning check's JSON (`learning.json`'s "runs"); benchmarks/replicates.py reads and
writes the files."""

from __future__ import annotations

import itertools
import json
import statistics

from .check import is_round, round_number, round_stage, settings_diff, with_defaults
from .check_report import paired_change

# A seed counts when every replicate gains and the mean gain is more than twice the replicates' standard
# deviation (with 3 replicates about a one-sided t-test at p < 0.04); chosen before the first reruns finished.
NOISE_TIMES = 2


def _row(rows: list[dict], family: str, seed: int, stage: str) -> dict | None:
    return next((r for r in rows if r["family"] == family and r["seed"] == seed and r["stage"] == stage), None)


def settings_mismatch(settings: list[dict]) -> list[str]:
    """What differs between the replicates' recorded settings ("i: name: a -> b"), aside from the number of rounds
    (a longer run's round 3 is the same round) and reflect_seed (what makes a replicate)."""
    full = [with_defaults(s) for s in settings]
    return [f"{i}: {d}" for i, s in enumerate(full[1:], 1)
            for d in settings_diff(full[0], s, ignore=("rounds", "reflect_seed"))]


def seed_summary(replicates: list[list[dict]], family: str, seed: int, round_: int, base: str) -> dict:
    """One seed's round `round_` in every replicate against the phase-1 model (`base`) they share.

    Raises ValueError when the replicates do not share that phase 1 (different test accuracy) or one lacks the
    round: then they are not replicates of one another."""
    starts = [_row(rows, family, seed, base) for rows in replicates]
    ends = [_row(rows, family, seed, round_stage(round_)) for rows in replicates]
    if any(r is None for r in starts + ends):
        missing = [i for i, (s, e) in enumerate(zip(starts, ends, strict=True)) if s is None or e is None]
        raise ValueError(f"{family} seed {seed}: replicate(s) {missing} lack {base} or round {round_}")
    if len({s["test"] for s in starts}) > 1:
        raise ValueError(f"{family} seed {seed}: the replicates' phase-1 test accuracies differ "
                         f"({[s['test'] for s in starts]}): they did not start from the same models")
    start = starts[0]
    tests = [e["test"] for e in ends]
    gains = [t - start["test"] for t in tests]
    noise = statistics.stdev(tests) if len(tests) > 1 else float("nan")
    mean_gain = statistics.fmean(gains)
    return {"family": family, "seed": seed, "round": round_, "phase1_test": start["test"],
            "phase1_train": start.get("train"), "tests": tests, "trains": [e.get("train") for e in ends],
            "gains": gains, "mean_gain": mean_gain, "noise": noise,
            "vs_phase1": [e.get("vs_phase1") for e in ends],
            # up to 5 replicates a gain <= 0 already fails the 2 x std test; from 6 on "every one gains" can decide
            "beyond_noise": len(tests) > 1 and min(gains) > 0 and mean_gain > NOISE_TIMES * noise,
            "train_up": all(e.get("train") is not None and start.get("train") is not None
                            and e["train"] > start["train"] for e in ends)}


def summarize(replicates: list[list[dict]], family: str, seeds: list[int], round_: int, base: str) -> dict:
    """Every seed's summary and the verdict the learning check asks of reflection: beyond the run-to-run noise on
    at least 2 of 3 seeds (two thirds of them), and train accuracy up on every seed in every replicate."""
    per_seed = [seed_summary(replicates, family, s, round_, base) for s in seeds]
    results = [[(s["tests"][i], s["trains"][i], json.dumps(s["vs_phase1"][i], sort_keys=True)) for s in per_seed]
               for i in range(len(replicates))]
    for i, j in itertools.combinations(range(len(replicates)), 2):
        if results[i] == results[j]:  # one run given twice would measure a spread of zero
            raise ValueError(f"replicates {i} and {j} have the same round-{round_} results on every seed: "
                             "the same run twice?")
    beyond = sum(s["beyond_noise"] for s in per_seed)
    return {"family": family, "round": round_, "replicates": len(replicates), "seeds": per_seed,
            "seeds_beyond_noise": beyond, "train_up_everywhere": all(s["train_up"] for s in per_seed),
            "holds": 3 * beyond >= 2 * len(seeds) and all(s["train_up"] for s in per_seed)}


def by_round(replicates: list[list[dict]], family: str, seeds: list[int], base: str) -> list[dict]:
    """`summarize` at every reflect round all replicates have (a longer run's first rounds are the same rounds): the
    trajectory, to read beside the verdict at the round fixed before the runs, never instead of it (picking the
    round after seeing them is one look per round, not one test)."""
    have = [{round_number(r["stage"]) for r in rows if r["family"] == family and r["seed"] == seed
             and is_round(r["stage"])} for rows in replicates for seed in seeds]  # every seed of every replicate
    out = []
    for r in sorted(set.intersection(*have)):
        try:
            out.append(summarize(replicates, family, seeds, r, base))
        except ValueError:  # e.g. two replicates that stopped alike by that round: no spread to table there
            continue
    return out


def between(outcomes: list[dict[str, bool]]) -> list[dict]:
    """Each pair of replicates' round models on the same test questions (question id -> right): the questions the
    later one fixed and broke against the earlier, i.e. how much two runs of one command disagree."""
    return [{"a": i, "b": j, **paired_change(outcomes[i], outcomes[j])}
            for i, j in itertools.combinations(range(len(outcomes)), 2)]


def markdown(summary: dict, names: list[str], rounds: list[dict] | None = None, fresh: int | None = None) -> str:
    """The table: per seed, phase 1, each replicate's round, the gains, the noise and whether the seed counts; with
    `rounds` (by_round's), a table of every shared round after the verdict; `fresh`: the reports are
    benchmarks/retest.py's, on that many fresh test questions per seed."""
    r = summary["round"]
    head = " | ".join(f"{n}: test (train)" for n in names)
    out = [f"# Reflection replicates: {summary['family']}, round {r}", "",
           "The same reflection command run from the same phase-1 models, each with its own `--reflect-seed` (or, "
           "before that flag, unseeded sampling): only the chains it samples (and with the flag its training "
           "order) differ. Noise "
           "= the standard deviation of a seed's round test accuracy over the replicates. A seed counts when every "
           f"replicate gains and the mean gain is more than {NOISE_TIMES} x that noise (with 3 replicates about a "
           "one-sided t-test at p < 0.04 on the gains). McNemar p: each replicate against phase 1 on the same test "
           "questions (the test questions' own noise)."
           + (f" Test accuracy here is on fresh held-out questions, not the check's own test split: "
              f"benchmarks/retest.py asked {fresh} per seed (repeats of the check's own left out)." if fresh else ""),
           "",
           f"| seed | phase 1: test (train) | {head} | gain per replicate | mean gain | noise (std) | "
           f"beyond {NOISE_TIMES} x noise | McNemar p per replicate (fixed/broken) |",
           "|---" * (7 + len(names)) + "|"]
    for s in summary["seeds"]:
        cells = " | ".join(f"{t:.3f} ({tr:.3f})" if tr is not None else f"{t:.3f}"
                           for t, tr in zip(s["tests"], s["trains"], strict=True))
        mc = ", ".join(f"{c['p']:.2f} (+{c['fixed']}/-{c['broken']})" if c else "-" for c in s["vs_phase1"])
        train = f" ({s['phase1_train']:.3f})" if s["phase1_train"] is not None else ""
        out.append(f"| {s['seed']} | {s['phase1_test']:.3f}{train} | {cells} | "
                   f"{', '.join(f'{g:+.3f}' for g in s['gains'])} | {s['mean_gain']:+.3f} | {s['noise']:.3f} | "
                   f"{'yes' if s['beyond_noise'] else 'no'} | {mc} |")
    seeds = summary["seeds"]
    if all(s.get("between") for s in seeds):  # every pair of replicates, in the same order for every seed
        lines = [f"{names[c['b']]} vs {names[c['a']]}: " + ", ".join(
            f"+{s['between'][k]['fixed']}/-{s['between'][k]['broken']} ({s['seed']})" for s in seeds)
            for k, c in enumerate(seeds[0]["between"])]
        out += ["", f"Replicate against replicate at round {r}, on the same test questions (questions the second "
                    f"fixed / broke; seed): {'; '.join(lines)}."]
    verdict = "holds" if summary["holds"] else "does not hold"
    out += ["", f"Round {r}, {summary['replicates']} replicates: {summary['seeds_beyond_noise']} of "
                f"{len(summary['seeds'])} seeds beyond {NOISE_TIMES} x the run-to-run noise; train accuracy up on "
                f"every seed in every replicate: {'yes' if summary['train_up_everywhere'] else 'no'}. The criterion "
                f"(at least 2 of 3 seeds, train up everywhere) {verdict}."]
    if rounds and len(rounds) > 1:
        out += ["", f"Every round the replicates share, the same numbers per seed: mean gain (noise), * = beyond "
                    f"{NOISE_TIMES} x noise. To read beside the verdict at round {r}, which was chosen before the runs, "
                    f"not instead of it: choosing a round after seeing {len(rounds)} of them is {len(rounds)} looks, "
                    "not one test.", "",
                "| round | " + " | ".join(f"seed {s['seed']}" for s in seeds) + " | mean gain, all seeds | "
                f"seeds beyond {NOISE_TIMES} x noise | train up everywhere |",
                "|---" * (len(seeds) + 4) + "|"]
        for t in rounds:
            cells = " | ".join(f"{s['mean_gain']:+.3f} ({s['noise']:.3f}){' *' if s['beyond_noise'] else ''}"
                               for s in t["seeds"])
            pooled = statistics.fmean(g for s in t["seeds"] for g in s["gains"])
            out.append(f"| {t['round']} | {cells} | {pooled:+.3f} | {t['seeds_beyond_noise']} of {len(t['seeds'])} | "
                       f"{'yes' if t['train_up_everywhere'] else 'no'} |")
    return "\n".join(out) + "\n"
