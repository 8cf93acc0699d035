"""Re-measure a finished learning check's models on fresh held-out questions, to see how much of the replicates'
run-to-run spread is the test set's own sampling noise.

The seed's test-question generator is continued past the check's --test questions (the same held-out pairs, new
distractors, kinds and option orders; world/check.fresh_test_questions), and the phase-1 model and the named
rounds' models are scored on them through the pipeline's evaluation (Ray Data, the HF sampler pool), each answer
written as it is made, so a rerun resumes an interrupted model and keeps a finished one. The report has
learning.json's shape, with the fresh test accuracies and the paired change of each round against phase 1 on the
fresh questions, so benchmarks/replicates.py reads it (without --works: the work folders' saved answers are to
the check's own questions).

    .venv/bin/python benchmarks/retest.py --work runs/A --questions 2400 --rounds 5,8 --out /tmp/A-fresh.json
    .venv/bin/python benchmarks/replicates.py --round 5 --out NAME /tmp/A-fresh.json /tmp/B-fresh.json ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="a finished learning check's work folder")
    ap.add_argument("--questions", type=int, default=2400, help="fresh test questions per seed (repeats of the "
                    "check's own are left out, so a few fewer)")
    ap.add_argument("--rounds", default="", help="comma-separated reflect rounds to score besides phase 1")
    ap.add_argument("--family", default="llama", help="the student family whose models are scored")
    ap.add_argument("--out", required=True, help="the report, learning.json-shaped")
    args = ap.parse_args()
    for k, v in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)

    from tinythinker_ray.eval.evaluate import evaluate
    from tinythinker_ray.storage import read_jsonl
    from tinythinker_ray.world.check import check_of, fresh_test_questions, round_stage, unit_mode, unit_run
    from tinythinker_ray.world.check_report import paired_change

    work = Path(args.work)
    check = check_of(work)
    if check is None:
        sys.exit(f"retest: {work} is not a learning-check work folder")
    s, cache = check.settings, check.cache
    rounds = sorted({int(r) for r in args.rounds.split(",") if r})
    stages = [s.reflect_from, *map(round_stage, rounds)]
    seeds = sorted({seed for family, seed, _ in cache.rows if family == args.family})
    if not seeds:
        sys.exit(f"retest: {work} has no {args.family} units")
    rows = []
    for seed in seeds:
        questions = fresh_test_questions(s, seed, args.questions)
        outcomes = {}
        for stage in stages:
            row = cache.get(args.family, seed, stage)
            if row is None:
                sys.exit(f"retest: {work} has no {args.family} seed {seed} {stage}: run the check that far first")
            mode, tag = unit_mode(check, row)
            run = unit_run(check, row)
            out = run.eval(f"{tag}-fresh{args.questions}")
            finished = json.loads(out.summary.read_text()) if out.summary.exists() else {}
            if (finished.get("model"), finished.get("n")) != (row["best"], len(questions)):
                # evaluate resumes an interrupted pass but redoes a finished one; a finished one is kept here
                cfg = check.config(seed, run.root, model=row["best"], family=args.family, mode=mode)
                evaluate(cfg, row["best"], questions, f"fresh test, seed {seed} {stage}", out.root)
            outcomes[stage] = {r["id"]: bool(r["correct"]) for r in read_jsonl(out.results)}
            got = outcomes[stage]
            fresh = {"stage": stage, "test": sum(got.values()) / len(got), "test_n": len(got),
                     "check_test": row["test"]}  # the check's own test accuracy, kept beside the fresh one
            if stage != s.reflect_from:
                fresh["vs_phase1"] = paired_change(outcomes[s.reflect_from], got)
            rows.append({k: row[k] for k in ("family", "seed", "train", "best") if k in row} | fresh)
            print(f"seed {seed} {stage}: fresh test {fresh['test']:.3f} on {len(got)} (check's {row['test']:.3f})",
                  flush=True)
    meta = {"settings": dataclasses.asdict(s), "seeds": seeds, "fresh_questions": args.questions, "work": str(work)}
    report = {"meta": meta, "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"retest: {args.out}")


if __name__ == "__main__":
    main()
