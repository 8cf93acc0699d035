"""Reflection's run-to-run noise (world/replicates.py, benchmarks/replicates.py): the per-seed verdict over
replicates of one reflection command from the same phase 1 (pure), and the script's files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinythinker_ray.core.modes import FULL
from tinythinker_ray.world.replicates import (
    between,
    by_round,
    markdown,
    seed_summary,
    settings_mismatch,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]


def rows(phase1: dict[int, float], round3: dict[int, float], train_gain: float = 0.01) -> list[dict]:
    """One replicate's learning.json rows: phase 1 and round 3 per seed (train = test + 0.1, round 3 + gain)."""
    out = []
    for seed, test in phase1.items():
        out.append({"family": "llama", "seed": seed, "stage": FULL, "test": test, "train": test + 0.1})
        out.append({"family": "llama", "seed": seed, "stage": "reflect-3", "test": round3[seed],
                    "train": test + 0.1 + train_gain, "vs_phase1": {"fixed": 10, "broken": 5, "p": 0.3}})
    return out


PHASE1 = {0: 0.40, 1: 0.60, 2: 0.60}


def test_a_seed_counts_only_when_every_replicate_gains_by_more_than_twice_their_spread():
    reps = [rows(PHASE1, {0: 0.42, 1: 0.61, 2: 0.60}), rows(PHASE1, {0: 0.43, 1: 0.64, 2: 0.62}),
            rows(PHASE1, {0: 0.42, 1: 0.59, 2: 0.61})]
    s0, s1, s2 = (seed_summary(reps, "llama", s, 3, FULL) for s in (0, 1, 2))
    assert s0["gains"] == pytest.approx([0.02, 0.03, 0.02]) and s0["noise"] == pytest.approx(0.00577, abs=1e-4)
    assert s0["beyond_noise"]  # +0.023 mean against 2 x 0.006
    assert not s1["beyond_noise"]  # one replicate loses (0.59 < 0.60)
    assert not s2["beyond_noise"]  # a replicate that ties is no gain
    verdict = summarize(reps, "llama", [0, 1, 2], 3, FULL)
    assert verdict["seeds_beyond_noise"] == 1 and not verdict["holds"]


def test_the_verdict_needs_two_of_three_seeds_and_train_up_on_every_seed_in_every_replicate():
    gain = {0: 0.42, 1: 0.62, 2: 0.62}
    more = {0: 0.43, 1: 0.63, 2: 0.625}
    reps = [rows(PHASE1, gain), rows(PHASE1, {0: 0.425, 1: 0.625, 2: 0.615}), rows(PHASE1, more)]
    assert summarize(reps, "llama", [0, 1, 2], 3, FULL)["holds"]
    flat = [rows(PHASE1, gain), rows(PHASE1, {0: 0.425, 1: 0.625, 2: 0.615}, train_gain=0.0), rows(PHASE1, more)]
    verdict = summarize(flat, "llama", [0, 1, 2], 3, FULL)
    assert verdict["seeds_beyond_noise"] == 3 and not verdict["train_up_everywhere"] and not verdict["holds"]


def test_two_copies_of_one_run_are_not_replicates():
    rep = rows(PHASE1, {0: 0.42, 1: 0.61, 2: 0.61})
    with pytest.raises(ValueError, match="replicates 0 and 2 have the same round-3 results on every seed"):
        summarize([rep, rows(PHASE1, {0: 0.43, 1: 0.61, 2: 0.61}), rep], "llama", [0, 1, 2], 3, FULL)


def test_replicates_that_did_not_start_from_the_same_phase1_or_lack_the_round_are_refused():
    other = rows({0: 0.41, 1: 0.60, 2: 0.60}, {0: 0.42, 1: 0.61, 2: 0.61})
    with pytest.raises(ValueError, match="seed 0: the replicates' phase-1 test accuracies differ"):
        seed_summary([rows(PHASE1, {0: 0.42, 1: 0.61, 2: 0.61}), other], "llama", 0, 3, FULL)
    short = [r for r in rows(PHASE1, {0: 0.42, 1: 0.61, 2: 0.61}) if r["stage"] == FULL]
    with pytest.raises(ValueError, match=r"replicate\(s\) \[1\] lack"):
        seed_summary([rows(PHASE1, {0: 0.42, 1: 0.61, 2: 0.61}), short], "llama", 0, 3, FULL)


def test_the_script_writes_the_table_the_numbers_and_the_chart(tmp_path):
    paths = []
    for i, r3 in enumerate(({0: 0.42, 1: 0.62, 2: 0.62}, {0: 0.43, 1: 0.63, 2: 0.60})):
        p = tmp_path / f"rep{i}.json"
        p.write_text(json.dumps({"meta": {"settings": {"reflect_from": FULL}, "seeds": [0, 1, 2]},
                                 "runs": rows(PHASE1, r3)}))
        paths.append(str(p))
    out = tmp_path / "res" / "replicates-x"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/replicates.py"), "--round", "3", "--out", str(out),
                           "--names", "first,second", *paths], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    md = Path(f"{out}.md").read_text()
    assert "first: test (train)" in md and "| 0 | 0.400 (0.500) | 0.420 (0.510) | 0.430 (0.510) |" in md
    assert "2 of 3 seeds beyond" in md and "does not hold" not in md  # seed 2 gains nothing in the second
    assert json.loads(Path(f"{out}.json").read_text())["seeds"][0]["tests"] == [0.42, 0.43]
    assert Path(f"{out}.png").stat().st_size > 0
    # the same report twice would measure a spread of zero, and every gain would count
    twice = subprocess.run([sys.executable, str(ROOT / "benchmarks/replicates.py"), "--out", str(out), paths[0],
                            str(tmp_path / "." / "rep0.json")], capture_output=True, text=True, cwd=ROOT)
    assert twice.returncode != 0 and "replicates 0 and 1 have the same round-3 results" in twice.stderr


def test_replicates_are_compared_with_each_other_question_by_question():
    a, b, c = {"q1": True, "q2": False, "q3": True}, {"q1": False, "q2": True, "q3": True}, {"q1": True, "q2": True}
    assert [(x["a"], x["b"], x["fixed"], x["broken"]) for x in between([a, b, c])] == [
        (0, 1, 1, 1), (0, 2, 1, 0), (1, 2, 1, 0)]  # only the questions both answered count
    reps = [rows(PHASE1, {0: 0.42, 1: 0.61, 2: 0.60}), rows(PHASE1, {0: 0.43, 1: 0.64, 2: 0.62})]
    summary = summarize(reps, "llama", [0, 1, 2], 3, FULL)
    for s in summary["seeds"]:
        s["between"] = between([a, b])
    assert "second vs first: +1/-1 (0), +1/-1 (1), +1/-1 (2)." in markdown(summary, ["first", "second"])


def test_from_six_replicates_one_that_loses_keeps_a_seed_from_counting_even_when_the_mean_clears_the_noise():
    gains = [0.0, 0.03, 0.03, 0.03, 0.03, 0.03]  # mean 0.025 > 2 x std 0.0122, but one replicate gains nothing
    reps = [rows(PHASE1, {0: 0.40 + g, 1: 0.60 + g + i / 1000, 2: 0.60}) for i, g in enumerate(gains)]
    s0 = seed_summary(reps, "llama", 0, 3, FULL)
    assert s0["mean_gain"] > 2 * s0["noise"] and not s0["beyond_noise"]


def test_reports_made_with_other_settings_are_not_replicates_but_a_longer_run_and_an_older_record_are():
    base = {"reflect_lr": 1e-4, "rounds": 5}
    assert settings_mismatch([base, base | {"rounds": 3}, base | {"reflect_mode": "recall_analyze"},
                              base | {"reflect_seed": 2}]) == []  # reflect_seed is what makes a replicate
    assert settings_mismatch([base, base | {"reflect_lr": 3e-4}]) == ["1: reflect_lr: 0.0001 -> 0.0003"]


def test_every_round_the_replicates_share_is_tabled_beside_the_verdict_at_the_chosen_round():
    def two_rounds(r2: dict[int, float], r3: dict[int, float], extra: bool = False) -> list[dict]:
        out = rows(PHASE1, r3)
        out += [r | {"stage": "reflect-2", "test": r2[r["seed"]]} for r in out if r["stage"] == "reflect-3"]
        if extra:  # a longer run: its round 4 is not shared, so it is not tabled
            out += [r | {"stage": "reflect-4"} for r in out if r["stage"] == "reflect-3"]
        return out
    reps = [two_rounds({0: 0.43, 1: 0.62, 2: 0.60}, {0: 0.42, 1: 0.61, 2: 0.60}, extra=True),
            two_rounds({0: 0.44, 1: 0.62, 2: 0.61}, {0: 0.43, 1: 0.64, 2: 0.62}),
            two_rounds({0: 0.43, 1: 0.63, 2: 0.60}, {0: 0.42, 1: 0.59, 2: 0.61})]
    rounds = by_round(reps, "llama", [0, 1, 2], FULL)
    assert [t["round"] for t in rounds] == [2, 3]
    assert [s["beyond_noise"] for s in rounds[0]["seeds"]] == [True, True, False]
    summary = summarize(reps, "llama", [0, 1, 2], 3, FULL)
    md = markdown(summary, ["a", "b", "c"], rounds)
    assert md.index("The criterion") < md.index("Every round the replicates share")  # the verdict comes first
    assert "| 2 | +0.033 (0.006) * | +0.023 (0.006) * | +0.003 (0.006) | +0.020 | 2 of 3 | yes |" in md
    assert "| 3 | +0.023 (0.006) * |" in md and "chosen before the runs" in md
    assert "Every round" not in markdown(summary, ["a", "b", "c"], rounds[1:])  # one round: nothing to add
    # a round one seed of one replicate never reached is not shared; a round two replicates ended alike is skipped
    cut = [r for r in reps[0] if not (r["seed"] == 2 and r["stage"] == "reflect-2")]
    assert [t["round"] for t in by_round([cut, *reps[1:]], "llama", [0, 1, 2], FULL)] == [3]
    first_round2 = {r["seed"]: r for r in reps[0] if r["stage"] == "reflect-2"}
    alike = [reps[0], reps[1], [first_round2[r["seed"]] if r["stage"] == "reflect-2" else r for r in reps[2]]]
    assert [t["round"] for t in by_round(alike, "llama", [0, 1, 2], FULL)] == [3]


def test_replicates_of_fresh_questions_say_so():
    reps = [rows(PHASE1, {0: 0.42, 1: 0.61, 2: 0.60}), rows(PHASE1, {0: 0.43, 1: 0.64, 2: 0.62})]
    summary = summarize(reps, "llama", [0, 1, 2], 3, FULL)
    assert "benchmarks/retest.py asked 2400 per seed" in markdown(summary, ["a", "b"], fresh=2400)
    assert "retest.py" not in markdown(summary, ["a", "b"])


def test_the_work_folders_answers_are_not_compared_with_fresh_question_reports(tmp_path):
    paths = []
    for i, r3 in enumerate(({0: 0.42, 1: 0.62, 2: 0.62}, {0: 0.43, 1: 0.63, 2: 0.60})):
        p = tmp_path / f"fresh{i}.json"
        p.write_text(json.dumps({"meta": {"settings": {"reflect_from": FULL}, "seeds": [0, 1, 2],
                                          "fresh_questions": 2400}, "runs": rows(PHASE1, r3)}))
        paths.append(str(p))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/replicates.py"), "--round", "3", "--out",
                           str(tmp_path / "x"), "--works", "runs/a,runs/b", *paths], capture_output=True, text=True)
    assert done.returncode == 2 and "these reports are on fresh questions" in done.stderr
