"""Preference pairs from the student's own chains (pure: plain dict rows in, pair rows out; no Ray, no I/O).

Phase 2 of TinyThinker, as the reference's generate.py builds them:

recall pairs, one question at a time: recalls whose chain reached the gold label are chosen, the others
rejected (each side deduplicated by text; a recall on both sides is dropped). A question without a rejected
recall gives nothing. The two sides are balanced: when chosen outnumber rejected, the rejected side is resampled
(with replacement) to their number; when rejected outnumber chosen, chosen is topped up with the TEACHER's
recalls of that question. prompt = recall_input(q).

analyze pairs, one (question, chosen recall) at a time: analysis sets sampled for that recall are chosen when
their greedy summary was right, rejected when wrong; only predictions naming an option of the question that
was also analysed count. Both-side sets are dropped, no rejected -> nothing. Balance: more chosen -> rejected
resampled to their number; more rejected and no chosen -> the analyses that came with the recall (its own right
chain or the teacher's) as chosen; more rejected and some chosen -> (rejected - chosen) draws of the chosen side
replace it. Each match gives TWO pairs: the gold option's analysis and the rejected prediction's option's
analysis, chosen vs rejected.

summarize pairs (reflect.mode recall_analyze_summarize or summarize: OUR ADDITION, the authors pair no summaries;
FIDELITY.md says why): every distinct chain of the recall generations whose greedy summary missed the label gives
one pair: prompt = summarize_input(q, its recall, its analyses), chosen = the label's summary ("So the answer is
option <label>."), rejected = the summary it wrote. A prompt that also reached the label is dropped.

"Gold" is the label phase 1 trained on (the teacher-relabelled one, reflect/iterate.training_questions). One
deliberate difference: a pair whose chosen and rejected texts are equal carries no preference and is dropped
(the authors keep it).

Rows in (one JSON line each, as selfgen writes them):
  recall generations   {"qid", "question": Question dict, "chains": [{"recall", "analyses", "prediction"}]}
  analyze generations  {"qid", "question", "recall", "backup": [analyses],
                        "chains": [{"analyses", "prediction"}]}
  (analyses = [[label, text], ...])
Pair rows out: {"prompt", "chosen", "rejected", "qid", "stage"} (+ "chosen_analyses" on recall pairs, which
the analyze stage uses as the backup of that recall).
(The recall generations' chains also carry "summary", the text the prediction was read from.)
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping

from ..core import format as fmt
from ..core.records import Question
from ..errors import DataError


def paired_stages(records: Iterable[Mapping], key: str = "{}_pairs") -> list[str]:
    """The stages whose pair counts the records hold, in chain order: recall and analyze always (every round records
    them), summarize when a round paired summaries. `key` names a count: "recall_pairs" in a round record, "recall"
    in a learning check's per-seed counts. For the tables of rounds."""
    records = list(records)
    return [s for s in ("recall", "analyze", "summarize")
            if s != "summarize" or any(key.format(s) in r for r in records)]


def _field(row: dict, key: str, index: int, source: str = "generations"):
    if key not in row:
        raise DataError("missing", file=source, line=index, field=key)
    return row[key]


def _dedup(items: list[dict], key) -> dict:
    """First occurrence per key, in order: {key: item}."""
    out: dict = {}
    for it in items:
        out.setdefault(key(it), it)
    return out


def _draw(pool: list, k: int, rng: random.Random) -> list:
    """k items of `pool`: without replacement when it has enough, with replacement when too few."""
    if k <= 0 or not pool:
        return []
    return rng.sample(pool, k) if k <= len(pool) else rng.choices(pool, k=k)


def _split_sides(chains: list[dict], key, gold: str) -> tuple[list[dict], list[dict]]:
    """Right and wrong chains, deduplicated by `key`, minus the keys seen on both sides."""
    right = _dedup([c for c in chains if c.get("prediction") == gold], key)
    wrong = _dedup([c for c in chains if c.get("prediction") != gold], key)  # unparsed summaries are wrong
    common = right.keys() & wrong.keys()
    return ([c for k, c in right.items() if k not in common],
            [c for k, c in wrong.items() if k not in common])


def _balance_recall(chosen: list, rejected: list, teacher: list, rng: random.Random) -> tuple[list, list]:
    """generate.py's recall sides: more chosen -> the rejected side resampled (with replacement) to their number;
    more rejected -> chosen topped up with the teacher's recalls of the question (the difference)."""
    if len(chosen) > len(rejected):
        return chosen, rng.choices(rejected, k=len(chosen))
    return chosen + _draw(teacher, len(rejected) - len(chosen), rng), rejected


def _balance_analyze(chosen: list, rejected: list, backup: list, rng: random.Random) -> tuple[list, list]:
    """generate.py's analyze sides: more chosen -> the rejected side resampled to their number; more rejected
    and no chosen -> as many backup sets (the analyses that came with the recall) as rejected; more rejected
    and some chosen -> the chosen side REPLACED by (rejected - chosen) draws of itself, so the matches (zip)
    are that many."""
    if len(chosen) > len(rejected):
        return chosen, rng.choices(rejected, k=len(chosen))
    if len(rejected) > len(chosen):
        pool, k = (chosen, len(rejected) - len(chosen)) if chosen else (backup, len(rejected))
        return (rng.choices(pool, k=k) if pool else []), rejected
    return chosen, rejected


# ----- recall -----------------------------------------------------------------------------------------------

def teacher_chains(summarize_rows: Iterable[dict], recall_rows: Iterable[dict] = (), *,
                   summarize_file: str = "summarize.jsonl", recall_file: str = "recall.jsonl"
                   ) -> dict[str, list[dict]]:
    """The teacher's right chains per question: {qid: [{"recall", "analyses"}]}.

    From teach/summarize.jsonl (input = summarize_input(q, recall, analyses)); questions that only have rows
    in teach/recall.jsonl (modes without analyze) contribute their recall targets with analyses None.
    """
    out: dict[str, list[dict]] = {}
    for i, row in enumerate(summarize_rows, 1):
        try:
            parsed = fmt.parse_stage_input(_field(row, "input", i, summarize_file))
        except ValueError as e:
            raise DataError(str(e), file=summarize_file, line=i, field="input") from None
        if parsed["recall"] is None:
            continue
        analyses = [list(a) for a in parsed["analyses"]] if parsed["analyses"] else None
        chain = {"recall": parsed["recall"], "analyses": analyses}
        out.setdefault(str(_field(row, "qid", i, summarize_file)), []).append(chain)
    extra: dict[str, list[dict]] = {}
    for i, row in enumerate(recall_rows, 1):
        qid = str(_field(row, "qid", i, recall_file))
        if qid not in out:
            target = _field(row, "target", i, recall_file)
            extra.setdefault(qid, []).append({"recall": fmt.ensure_period(target), "analyses": None})
    return out | extra


def recall_pairs_for(q: Question, chains: list[dict], teacher: list[dict], rng: random.Random) -> list[dict]:
    """Recall pairs of one question from its sampled chains; `teacher` = that question's teacher chains."""
    chosen, rejected = _split_sides(chains, lambda c: c["recall"], q.answer)
    if not rejected:
        return []
    chosen, rejected = _balance_recall(chosen, rejected, teacher, rng)
    prompt = fmt.recall_input(q)
    return [{"prompt": prompt, "chosen": c["recall"], "rejected": r["recall"], "qid": q.id, "stage": "recall",
             "chosen_analyses": c.get("analyses")}
            for c, r in zip(chosen, rejected, strict=False) if c["recall"] != r["recall"]]


def build_recall_pairs(generations: Iterable[dict], teacher_recalls: Mapping[str, list[dict]],
                       rng: random.Random) -> Iterator[dict]:
    """Recall pairs over recall generations, streamed one question row at a time."""
    for i, row in enumerate(generations, 1):
        q = Question.from_dict(_field(row, "question", i))
        yield from recall_pairs_for(q, _field(row, "chains", i), teacher_recalls.get(q.id, []), rng)


def analyze_requests(recall_pairs: Iterable[dict], questions: Mapping[str, Question]) -> list[dict]:
    """One analyze-generation request per distinct (question, chosen recall), with the analyses that came with
    it (its own right chain or the teacher's) as the backup for an empty chosen side."""
    out: dict[tuple[str, str], dict] = {}
    for p in recall_pairs:
        key = (p["qid"], p["chosen"])
        if key not in out:
            out[key] = {"qid": p["qid"], "question": questions[p["qid"]].to_dict(), "recall": p["chosen"],
                        "backup": []}
        req = out[key]
        if p.get("chosen_analyses") and p["chosen_analyses"] not in req["backup"]:
            req["backup"].append(p["chosen_analyses"])
    return list(out.values())


# ----- analyze ----------------------------------------------------------------------------------------------

def _valid(chain: dict, labels: set[str]) -> bool:
    """A prediction counts only if it names an option of the question that the chain also analysed."""
    p = chain.get("prediction")
    return p in labels and p in {label for label, _ in chain["analyses"]}


def _key(analyses) -> tuple:
    return tuple(tuple(a) for a in analyses)


def analyze_pairs_for(q: Question, recall: str, chains: list[dict], backup: list, rng: random.Random
                      ) -> list[dict]:
    """Analyze pairs of one (question, recall); `backup` = right analysis sets to top the chosen side up."""
    labels = set(q.labels)
    chains = [c for c in chains if _valid(c, labels)]
    chosen, rejected = _split_sides(chains, lambda c: _key(c["analyses"]), q.answer)
    if not rejected:
        return []
    chosen, rejected = _balance_analyze(chosen, rejected, [{"analyses": a, "prediction": q.answer} for a in backup],
                                        rng)
    out = []
    for c, r in zip(chosen, rejected, strict=False):  # a shorter side ends the matches
        mine, theirs = dict(map(tuple, c["analyses"])), dict(map(tuple, r["analyses"]))
        for label in (q.answer, r["prediction"]):
            good, bad = mine.get(label), theirs.get(label)
            if good and bad and good != bad:  # an identical pair carries no preference
                out.append({"prompt": fmt.analyze_input(q, label, recall), "chosen": good, "rejected": bad,
                            "qid": q.id, "stage": "analyze"})
    return out


def build_analyze_pairs(generations: Iterable[dict], teacher_analyses: Mapping[str, list], rng: random.Random
                        ) -> Iterator[dict]:
    """Analyze pairs over analyze generations (one row per question and chosen recall), streamed.

    `teacher_analyses` {qid: [analyses]} backs up recalls that came with no analyses of their own.
    """
    for i, row in enumerate(generations, 1):
        q = Question.from_dict(_field(row, "question", i))
        backup = row.get("backup") or teacher_analyses.get(q.id, [])
        yield from analyze_pairs_for(q, _field(row, "recall", i), _field(row, "chains", i), backup, rng)


# ----- summarize (our addition) -----------------------------------------------------------------------------

def summarize_pairs_for(q: Question, chains: list[dict]) -> list[dict]:
    """Summarize pairs of one question: one per distinct (recall, analyses) whose summary missed the label."""
    def prompt(c: dict) -> str:
        # selfgen writes a chain without analyses (a recall_summarize student) as [], its summary saw none
        return fmt.summarize_input(q, c.get("recall"), c.get("analyses") or None)

    right, wrong = _split_sides(chains, prompt, q.answer)
    chosen = fmt.summarize_target(q.answer)
    return [{"prompt": prompt(c), "chosen": chosen, "rejected": c["summary"], "qid": q.id, "stage": "summarize"}
            for c in wrong if c.get("summary") and c["summary"] != chosen]


def build_summarize_pairs(generations: Iterable[dict]) -> Iterator[dict]:
    """Summarize pairs over recall generations, streamed one question row at a time."""
    for i, row in enumerate(generations, 1):
        q = Question.from_dict(_field(row, "question", i))
        yield from summarize_pairs_for(q, _field(row, "chains", i))
