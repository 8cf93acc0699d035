"""From raw teacher replies to the rationales worth training on, as the reference notebook filters them.

    parse_reply     one reply -> Rationale, or the reason it is dropped
    filter_samples  a question's replies -> rationales + drop counts
    majority_label  follow the teacher's majority where it disagrees with the label (relabel)
    select_diverse  up to `augment` rationales whose Key Information differ, then a seeded fill
    judge           majority label + selection for one question
    plan_retries    which questions need another round, how many samples, how many tokens

Departures from the reference, each deliberate: option letters are any capital (it hard-codes A-E); the
explanation delimiter is the earliest of "Because"/"Although"/"While" in the line (it took the first in list
order, which can split inside the reason); a multi-line Key Information is joined into one line (it kept
only the first line, often empty); a reply that calls two options correct is dropped (it kept the last);
explanations are stored in the question's option order so that summarize inputs match inference, where
options are analysed A, B, C... (the teacher writes the gold option first: that would leak the answer's
position).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from ..core.format import ensure_period

# Why a reply is dropped (stats count each): cut by max_tokens, the engine/endpoint failed, no usable
# "Key Information:" line, an explanation whose head is not "X is correct." / "X is incorrect.", a letter
# that is not an option or is explained twice, no option called correct, more than one called correct,
# fewer explanations than options.
DROP_REASONS = ("length", "error", "no_key_information", "bad_prefix", "unknown_option", "duplicate_option",
                "no_correct_option", "multiple_correct", "missing_options")

_KEY_BLOCK = re.compile(r"(Key Information.*?)(Explanations:)", re.DOTALL)
_EXPLANATIONS = re.compile(r"Explanations:\s*")
_DELIMITER = re.compile(r"Because,? |Although |While ")
_PREFIX = re.compile(r"^([A-Z]) is (correct|incorrect)\.$")


@dataclass(frozen=True)
class Rationale:
    knowledge: str  # the Key Information, ending in . " or '
    answer: str  # the option the teacher calls correct
    explanations: tuple[tuple[str, str], ...]  # (label, reason ending in a period), in option order


@dataclass
class Verdict:
    """One question after filtering: its (possibly new) label and the rationales kept for it."""

    label: str
    relabelled: bool
    parsed: int  # rationales that parsed
    consistent: int  # of which agree with `label`
    kept: list[Rationale]


def collate(text: str) -> list[str]:
    """Non-empty stripped lines, with the Key Information on one line of its own before 'Explanations: '."""
    m = _KEY_BLOCK.search(text)
    if m:
        knowledge = " ".join(line.strip() for line in m.group(1).split("\n") if line.strip())
        text = knowledge + "\n" + text[m.end(1):]
    text = _EXPLANATIONS.sub("Explanations: ", text)
    return [line.strip() for line in text.strip().split("\n") if line.strip()]


def parse_reply(text: str, labels: list[str], finish_reason: str = "stop") -> Rationale | str:
    """A Rationale, or a drop reason from DROP_REASONS."""
    if finish_reason in ("length", "error"):
        return finish_reason
    lines = collate(text)
    if not lines or "Key Information:" not in lines[0]:
        return "no_key_information"
    knowledge = lines[0].split("Key Information:", 1)[1].strip()
    if not knowledge:
        return "no_key_information"
    reasons: dict[str, str] = {}
    correct: list[str] = []
    for line in lines[1:1 + len(labels)]:
        line = line.removeprefix("Explanations:").strip()
        cut = _DELIMITER.search(line)
        if ("is correct" not in line and "is incorrect" not in line) or cut is None:
            continue  # not an explanation line: the option it should have covered ends up missing
        prefix, reason = line[:cut.start()].strip(), line[cut.end():].strip()
        m = _PREFIX.match(prefix)
        if m is None:
            return "bad_prefix"
        label, verdict = m.groups()
        if label not in labels:
            return "unknown_option"
        if label in reasons:
            return "duplicate_option"
        reasons[label] = ensure_period(reason)
        if verdict == "correct":
            correct.append(label)
    if not correct:
        return "no_correct_option"
    if len(correct) > 1:
        return "multiple_correct"
    if len(reasons) != len(labels):
        return "missing_options"
    return Rationale(ensure_period(knowledge), correct[0], tuple((lab, reasons[lab]) for lab in labels))


def filter_samples(completions: Iterable[tuple[str, str]], labels: list[str]
                   ) -> tuple[list[Rationale], Counter]:
    """(text, finish_reason) pairs -> the rationales that parse, and how many were dropped for each reason."""
    kept, drops = [], Counter()
    for text, finish in completions:
        out = parse_reply(text, labels, finish)
        if isinstance(out, str):
            drops[out] += 1
        else:
            kept.append(out)
    return kept, drops


def majority_label(answers: list[str], label: str) -> str:
    """The teacher's majority answer when it beats the label; on a tie the label stands (the teacher has no
    majority against it), and among tied other answers the first given wins."""
    if not answers:
        return label
    counts = Counter(answers)
    top = max(counts.values())
    if counts.get(label, 0) == top:
        return label
    return next(a for a in answers if counts[a] == top)


def select_diverse(candidates: list[Rationale], k: int, threshold: int, rng: random.Random
                   ) -> list[Rationale]:
    """Up to k rationales: first, in order, those whose Key Information is more than `threshold` edits from
    every other candidate's; then a seeded random fill from the rest."""
    texts = [c.knowledge for c in candidates]
    distinct = [i for i, a in enumerate(texts)
                if all(Levenshtein.distance(a, b, score_cutoff=threshold) > threshold
                       for j, b in enumerate(texts) if j != i)][:k]
    taken = set(distinct)
    chosen = [candidates[i] for i in distinct]
    rest = [c for i, c in enumerate(candidates) if i not in taken]
    return chosen + rng.sample(rest, min(k - len(chosen), len(rest)))


def judge(label: str, parsed: list[Rationale], *, augment: int, threshold: int, rng: random.Random
          ) -> Verdict:
    """A question's parsed rationales (all rounds together) -> its label after the majority vote and the
    diverse selection among the rationales that agree with it."""
    new_label = majority_label([r.answer for r in parsed], label)
    consistent = [r for r in parsed if r.answer == new_label]
    return Verdict(label=new_label, relabelled=new_label != label, parsed=len(parsed),
                   consistent=len(consistent), kept=select_diverse(consistent, augment, threshold, rng))


@dataclass(frozen=True)
class Ask:
    """One question's request in a round: how many samples, and the token budget of each."""

    n: int
    max_tokens: int


@dataclass(frozen=True)
class Outcome:
    """One question after a round of asking."""

    qid: str
    unusable: int  # replies of this round that did not parse (cut by length, malformed, ...)
    consistent: int  # rationales so far (all rounds) that agree with the voted label
    cut: bool  # a reply of this round was cut by max_tokens
    max_tokens: int  # what this round asked for


def plan_retries(outcomes: Iterable[Outcome], *, reask: str, augment: int, max_tokens_cap: int
                 ) -> dict[str, Ask]:
    """The next round's asks.

    reask "unusable" (the authors' cost model): a question asks again for as many samples as its round's replies
    that could not be used; replies that parsed but disagree with the vote are not replaced. "missing": a
    question short of `augment` consistent rationales asks for the number missing. Either way a question whose
    replies were cut by length gets twice the tokens (capped), as the authors doubled max_tokens for it.
    """
    plan = {}
    for o in outcomes:
        n = o.unusable if reask == "unusable" else augment - o.consistent
        if n > 0:
            plan[o.qid] = Ask(n, min(o.max_tokens * 2, max_tokens_cap) if o.cut else o.max_tokens)
    return plan
