"""Stage-dataset building at scale: 100k and 1M synthetic teacher rationales, streamed one question at a time.

Each question (5 options) gets 8 teacher replies in the reference's text format: most well formed, some cut
by length, some off-format, some calling another option correct (a relabel when they are the majority).
Every reply goes through the same path as `tinythinker teach`: parse_reply -> majority label -> diversity
pick (augment 8) -> recall / analyze / summarize rows -> dedup -> the four JSONL files (on disk, then
deleted). Each size runs in a fresh process so its peak RSS is its own. Streaming means RSS stays flat from
100k to 1M and throughput holds: the last line prints `ratio` = rows per CPU second at 1M / at 100k (CPU
time: a shared machine's wall clock measures its neighbours too; wall rows/s are printed as well).

    .venv/bin/python benchmarks/bench_data_build.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from results_file import scaling_main

from tinythinker_ray.core.records import Question
from tinythinker_ray.rundir import TeachDir
from tinythinker_ray.teacher import filters, prompt
from tinythinker_ray.teacher.stages import write_stages

SAMPLES = AUGMENT = 8  # CSQA in the paper: 8 samples, 8 rationales kept
LABELS = "ABCDE"
VIEWS = ("People keep perishable food", "Cold slows the growth of bacteria", "A kitchen appliance is meant",
         "The question asks about a place", "Everyday storage habits say", "Temperature matters most here",
         "Think of where groceries go", "Household routines point")


def _question(i: int) -> Question:
    stem = f"Where would you most likely keep item number {i} so that it stays fresh for a week?"
    options = tuple((lab, f"option {lab.lower()} place {i}") for lab in LABELS)
    return Question(f"q{i}", stem, options, LABELS[i % 5])


def _reply(q: Question, rng: random.Random, k: int) -> tuple[str, str]:
    x = rng.random()
    if x < 0.05:
        return "I am not sure about this one.", "stop"
    answer = q.answer if x > 0.12 else rng.choice(q.labels)
    lines = [f"{lab} is {'correct' if lab == answer else 'incorrect'}. Because option {lab} "
             f"{'fits' if lab == answer else 'does not fit'} what the question describes, "
             f"view {rng.randrange(4)}." for lab in prompt.option_order(q)]
    return prompt.reply_text(f"{VIEWS[k]} for item {q.id}, variant {rng.randrange(3)}.", lines), \
        "length" if x > 0.97 else "stop"


def taught(n_questions: int, seed: int = 0):
    """One group per question: (question, label after the vote, kept rationales), made on the fly."""
    rng = random.Random(seed)
    for i in range(n_questions):
        q = _question(i)
        parsed, _ = filters.filter_samples([_reply(q, rng, k) for k in range(SAMPLES)], q.labels)
        rng_q = random.Random(f"{seed}:{q.id}")
        v = filters.judge(q.answer, parsed, augment=AUGMENT, threshold=10, rng=rng_q)
        yield [(q, v.label, v.kept)]


def one(rationales: int) -> dict:
    questions = rationales // SAMPLES
    out = tempfile.mkdtemp(prefix="bench_data_build_")
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        counts = write_stages(taught(questions), TeachDir(Path(out)))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rows = sum(c["written"] for c in counts.values())
    return {"rationales": questions * SAMPLES, "rows": rows, "seconds": round(seconds, 2),
            "cpu_s": round(cpu, 2),
            "rows_per_s": round(rows / seconds), "rows_per_cpu_s": round(rows / cpu),
            "rationales_per_s": round(questions * SAMPLES / seconds),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def line(r: dict) -> str:
    return (f"{r['rationales']:>9} rationales  {r['rows']:>9} stage rows  {r['seconds']:>7.2f} s wall  "
            f"{r['cpu_s']:>7.2f} s cpu  {r['rationales_per_s']:>6} rationales/s  "
            f"{r['rows_per_s']:>7} rows/s  "
            f"{r['rows_per_cpu_s']:>7} rows/cpu-s  peak RSS {r['peak_rss_mib']} MiB")


def main() -> None:
    scaling_main("data_build", __doc__, __file__, one, line)


if __name__ == "__main__":
    main()
