"""Reflection's run-to-run noise, measured: the learning check's reports of the same reflection command run
several times from the same phase-1 models, compared per seed (tinythinker_ray/world/replicates.py).

    # each replicate: the same command from the same phase 1, a new --work, --out and --reflect-seed
    .venv/bin/python benchmarks/learning.py <flags> --phase1-from runs/A --work runs/A-rep1 --reflect-seed 1 \\
        --out /tmp/rep1
    .venv/bin/python benchmarks/learning.py <flags> --phase1-from runs/A --work runs/A-rep2 --reflect-seed 2 \\
        --out /tmp/rep2
    .venv/bin/python benchmarks/replicates.py --round 3 --out benchmarks/results/replicates-NAME \\
        --works runs/A,runs/A-rep1,runs/A-rep2 \\
        benchmarks/results/learning-A.json /tmp/rep1/learning.json /tmp/rep2/learning.json

--works (optional) adds how far the replicates' round models disagree on the same test questions.
Writes NAME.md (the table, the verdict and every round the reports share), NAME.json (every number) and NAME.png
(each seed's test accuracy by round, one line per replicate). Reports made with other settings (the number of rounds aside) are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tinythinker_ray.world.check import is_round, round_number, round_stage  # noqa: E402
from tinythinker_ray.world.replicates import between, by_round, markdown, settings_mismatch, summarize  # noqa: E402


def outcomes(work: Path, family: str, seed: int, stage: str) -> dict[str, bool]:
    """A replicate's round model on the test questions (question id -> right), from its work folder's evaluation."""
    from tinythinker_ray.world.check import check_of, held_out_outcomes

    check = check_of(work)
    if check is None:
        sys.exit(f"replicates: {work} is not a learning-check work folder")
    got = held_out_outcomes(check, {"family": family, "seed": seed, "stage": stage})
    if got is None:
        sys.exit(f"replicates: {work} has no saved test evaluation of {family} seed {seed} {stage}")
    return got


def chart(replicates: list[list[dict]], names: list[str], family: str, seeds: list[int], base: str,
          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(seeds), figsize=(4 * len(seeds), 3.5), squeeze=False)
    for ax, seed in zip(axes[0], seeds, strict=True):
        for name, rows in zip(names, replicates, strict=True):
            mine = {r["stage"]: r["test"] for r in rows if r["family"] == family and r["seed"] == seed}
            rounds = sorted(round_number(s) for s in mine if is_round(s))
            ax.plot([0, *rounds], [mine[base], *(mine[round_stage(i)] for i in rounds)], marker="o", label=name)
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("reflect round (0 = phase 1)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.suptitle(f"Reflection replicates from the same phase 1 ({family})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="learning.json of each replicate (the first names the settings)")
    ap.add_argument("--names", help="comma-separated, one per report (default: rep 0, rep 1, ...)")
    ap.add_argument("--family", default="llama")
    ap.add_argument("--round", type=int, default=3, help="the round compared with phase 1 (fix it before the runs)")
    ap.add_argument("--works", help="comma-separated work folders, one per report: adds each pair of replicates' "
                    "paired comparison at the round (their saved test evaluations)")
    ap.add_argument("--out", required=True, help="path without suffix: .md, .json and .png are written")
    args = ap.parse_args()
    if len(args.reports) < 2:
        ap.error("at least two replicates are needed to measure their spread")
    names = args.names.split(",") if args.names else [f"rep {i}" for i in range(len(args.reports))]
    if len(names) != len(args.reports):
        ap.error(f"--names gives {len(names)} names for {len(args.reports)} reports")
    reports = [json.loads(Path(p).read_text()) for p in args.reports]
    base = reports[0]["meta"]["settings"]["reflect_from"]
    seeds = reports[0]["meta"]["seeds"]
    if diff := settings_mismatch([r["meta"]["settings"] for r in reports]):
        sys.exit(f"replicates: the reports were made with other settings, so they are not replicates ({'; '.join(diff)})")
    replicates = [r["runs"] for r in reports]
    try:
        summary = summarize(replicates, args.family, seeds, args.round, base)
        rounds = by_round(replicates, args.family, seeds, base)
    except ValueError as e:
        sys.exit(f"replicates: {e} ({', '.join(args.reports)})")
    if args.works and reports[0]["meta"].get("fresh_questions"):
        ap.error("--works compares the work folders' saved answers to the check's own test questions; these reports "
                 "are on fresh questions (benchmarks/retest.py)")
    if args.works:
        works = [Path(w) for w in args.works.split(",")]
        if len(works) != len(args.reports):
            ap.error(f"--works gives {len(works)} folders for {len(args.reports)} reports")
        if len({w.resolve() for w in works}) < len(works):
            ap.error("--works names a folder twice")
        for s in summary["seeds"]:
            got = [outcomes(w, args.family, s["seed"], round_stage(args.round)) for w in works]
            for w, o, test in zip(works, got, s["tests"], strict=True):  # each folder is its report's run
                if abs((score := sum(o.values()) / len(o)) - test) > 1e-9:
                    sys.exit(f"replicates: {w}'s seed {s['seed']} round {args.round} scores {score:.3f} on test, "
                             f"its report {test:.3f}: --works must follow the reports' order")
            s["between"] = between(got)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = markdown(summary, names, rounds, fresh=reports[0]["meta"].get("fresh_questions"))
    Path(f"{out}.md").write_text(md)
    Path(f"{out}.json").write_text(json.dumps({"reports": args.reports, "names": names, **summary,
                                                    "by_round": rounds}, indent=2)
                                        + "\n")
    chart(replicates, names, args.family, seeds, base, Path(f"{out}.png"))
    print(md)


if __name__ == "__main__":
    main()
