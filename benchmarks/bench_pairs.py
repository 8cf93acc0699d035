"""Preference-pair building at scale: 100k and 1M synthetic generations, streamed one question at a time.

Each question gets 10 sampled recall chains and 10 sampled analysis sets (a generation = one chain), about 40%
right; rows go through a JSON line round trip (as they come from generations.jsonl) and into the pure pair
builders. Each size runs in a fresh process so its peak RSS is its own. Streaming means RSS stays flat from
100k to 1M and throughput holds: the last line prints `ratio` = rows per CPU second at 1M / at 100k (CPU
time, not wall time, so that neighbours on a shared machine do not move it).

    .venv/bin/python benchmarks/bench_pairs.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import json
import random
import resource
import time

from results_file import scaling_main

from tinythinker_ray.core.records import Question
from tinythinker_ray.reflect.pairs import build_analyze_pairs, build_recall_pairs

SAMPLES = 10  # chains per question and stage, as the paper
LABELS = "ABCDE"


def _question(i: int) -> Question:
    return Question(f"q{i}", f"Question number {i} about everyday things?",
                    tuple((lab, f"option {lab.lower()} {i}") for lab in LABELS), LABELS[i % 5])


def _analyses(rng: random.Random, i: int) -> list[list[str]]:
    return [[lab, f"analysis {rng.randrange(6)} of option {lab} for {i}."] for lab in LABELS]


def _prediction(rng: random.Random, gold: str) -> str | None:
    x = rng.random()
    return gold if x < 0.4 else None if x < 0.45 else rng.choice(LABELS)


def recall_rows(n_questions: int, seed: int = 0):
    rng = random.Random(seed)
    for i in range(n_questions):
        q = _question(i)
        chains = [{"recall": f"recall {rng.randrange(8)} for {i}.", "analyses": _analyses(rng, i),
                   "summary": "", "prediction": _prediction(rng, q.answer)} for _ in range(SAMPLES)]
        yield json.loads(json.dumps({"qid": q.id, "question": q.to_dict(), "chains": chains}))


def analyze_rows(n_questions: int, seed: int = 1):
    rng = random.Random(seed)
    for i in range(n_questions):
        q = _question(i)
        chains = [{"analyses": _analyses(rng, i), "prediction": _prediction(rng, q.answer)}
                  for _ in range(SAMPLES)]
        yield json.loads(json.dumps({"qid": q.id, "question": q.to_dict(), "recall": f"recall for {i}.",
                                     "backup": [_analyses(rng, i)], "chains": chains}))


class Teacher:
    """The teacher's chains per question, made on demand (a dict of them would be the run's index)."""

    def get(self, qid: str, default=None) -> list[dict]:
        return [{"recall": f"teacher recall {k} for {qid}.", "analyses": None} for k in range(2)]


def one(generations: int) -> dict:
    questions = generations // (2 * SAMPLES)
    teacher = Teacher()
    rng = random.Random(42)
    t0, c0 = time.perf_counter(), time.process_time()
    n_recall = sum(1 for _ in build_recall_pairs(recall_rows(questions), teacher, rng))
    n_analyze = sum(1 for _ in build_analyze_pairs(analyze_rows(questions), {}, rng))  # rows carry backups
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = questions * 2 * SAMPLES
    return {"generations": rows, "recall_pairs": n_recall, "analyze_pairs": n_analyze,
            "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "rows_per_cpu_s": round(rows / cpu),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def line(r: dict) -> str:
    return (f"{r['generations']:>9} generations  {r['recall_pairs']:>8} recall pairs  "
            f"{r['analyze_pairs']:>8} analyze pairs  {r['seconds']:>7.2f} s  {r['rows_per_s']:>8} rows/s "
            f"({r['rows_per_cpu_s']} per CPU s)  peak RSS {r['peak_rss_mib']} MiB")


def main() -> None:
    scaling_main("pairs", __doc__, __file__, one, line)


if __name__ == "__main__":
    main()
