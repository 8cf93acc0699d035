"""The three-stage text format (Recall -> Analyze -> Summarize), as pure functions.

Every prompt, parser, training row and preference pair in the project goes through this module, so the
student sees exactly one format. It matches the reference implementation:

    {stem}\n(A) x (B) y ...\nRecall: {general knowledge}\nAnalyze: For option A, ... For option B, ...\nSummarize:
    -> "So the answer is option X."
"""

from __future__ import annotations

import re

from .records import Question

RECALL = "Recall:"
ANALYZE = "Analyze:"
SUMMARIZE = "Summarize:"
# The authors' scoring pattern: exactly the trained "the answer is option X." (the headline accuracy).
ANSWER_RE = re.compile(r"the answer is option ([A-Z])\.")
# Reported beside it, so a format failure shows as the gap between the two: case, parentheses and the final
# period optional (\b: "the answer is option Apple" still names no option).
LENIENT_ANSWER_RE = re.compile(r"the answer is option \(?([A-Z])\b\)?", re.IGNORECASE)
_OPTION_RE = re.compile(r"\(([A-Z])\) ")
_FOR_OPTION_RE = re.compile(r"For option ([A-Z]),")


def ensure_period(text: str) -> str:
    """The reference closes every knowledge sentence with '.', '"' or "'"; the chain relies on it."""
    text = text.strip()
    return text if text.endswith((".", '"', "'")) else text + "."


def options_line(options) -> str:
    return " ".join(f"({label}) {text}" for label, text in options)


def question_block(q: Question) -> str:
    return f"{q.stem}\n{options_line(q.options)}"


def recall_input(q: Question) -> str:
    return f"{question_block(q)}\n{RECALL}"


def analyze_input(q: Question, label: str, recall: str | None) -> str:
    """Input for one option's analysis; `recall=None` for the analyze_summarize ablation (no recall stage)."""
    head = question_block(q) if recall is None else f"{question_block(q)}\n{RECALL} {ensure_period(recall)}"
    return f"{head}\n{ANALYZE} For option {label},"


def analyses_text(analyses) -> str:
    """[(label, text)] -> 'For option A, ... For option B, ...'"""
    return " ".join(f"For option {label}, {ensure_period(text)}" for label, text in analyses)


def summarize_input(q: Question, recall: str | None, analyses) -> str:
    """Input for the summary; `recall` and/or `analyses` are None in the ablations that skip those stages."""
    parts = [question_block(q)]
    if recall is not None:
        parts.append(f"{RECALL} {ensure_period(recall)}")
    if analyses is not None:
        parts.append(f"{ANALYZE} {analyses_text(analyses)}")
    parts.append(SUMMARIZE)
    return "\n".join(parts)


def summarize_target(label: str) -> str:
    return f"So the answer is option {label}."


def extract_answer(text: str | None, *, lenient: bool = False) -> str | None:
    """The option letter of "the answer is option X." (ANSWER_RE), or with `lenient` LENIENT_ANSWER_RE's; else None."""
    if not text:
        return None
    m = (LENIENT_ANSWER_RE if lenient else ANSWER_RE).search(text)
    return m.group(1).upper() if m else None


# ----- inverse parsers -------------------------------------------------------------------------------------------

def parse_options_line(line: str) -> list[tuple[str, str]]:
    """'(A) x (B) y' -> [('A', 'x'), ('B', 'y')]."""
    marks = list(_OPTION_RE.finditer(line))
    if not marks or marks[0].start() != 0:
        raise ValueError(f"not an options line: {line!r}")
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        out.append((m.group(1), line[m.end():end].strip()))
    return out


def parse_question_block(block: str) -> tuple[str, list[tuple[str, str]]]:
    """'{stem}\\n(A) x ...' -> (stem, options). The stem may itself span lines; options are the last line."""
    stem, _, line = block.rpartition("\n")
    return stem, parse_options_line(line)


def parse_stage_input(text: str) -> dict:
    """Split any stage input back into its parts: stem, options, recall, analyses, stage."""
    out: dict = {"recall": None, "analyses": None}
    body = text
    if body.endswith("\n" + SUMMARIZE):
        out["stage"], body = "summarize", body[: -len(SUMMARIZE) - 1]
    elif body.endswith(RECALL) and body.endswith("\n" + RECALL):
        out["stage"], body = "recall", body[: -len(RECALL) - 1]
    else:
        m = re.search(r"\n" + ANALYZE + r" For option ([A-Z]),$", body)
        if not m:
            raise ValueError(f"not a stage input: {text[-60:]!r}")
        out["stage"], out["option"], body = "analyze", m.group(1), body[: m.start()]
    if f"\n{ANALYZE} " in body:
        body, _, analyses = body.partition(f"\n{ANALYZE} ")
        out["analyses"] = split_analyses(analyses)
    if f"\n{RECALL} " in body:
        body, _, recall = body.partition(f"\n{RECALL} ")
        out["recall"] = recall
    out["stem"], out["options"] = parse_question_block(body)
    return out


def split_analyses(text: str) -> list[tuple[str, str]]:
    """'For option A, x. For option B, y.' -> [('A', 'x.'), ('B', 'y.')]."""
    marks = list(_FOR_OPTION_RE.finditer(text))
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append((m.group(1), text[m.end():end].strip()))
    return out
