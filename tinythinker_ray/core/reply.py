"""The teacher's side of the text format: options as the teacher sees them, and its reply.

    options   "A. x, B. y, ..." (the student sees "(A) x (B) y", core/format.py)
    reply     "Key Information: <one line>\\nExplanations: <label> is correct. Because ...\\n<label> is incorrect..."

The teacher's prompt (teacher/prompt.py), its parser (teacher/filters.py) and the rule teacher of the learning
check (world/rules.py) all write or read exactly this.
"""

from __future__ import annotations

from .records import Question


def options_text(q: Question) -> str:
    """'A. x, B. y, ...' as in the authors' teacher prompt."""
    return ", ".join(f"{label}. {text}" for label, text in q.options)


def option_order(q: Question) -> list[str]:
    """The order the teacher's user turn (and its constraint) asks for: the gold option first, then the others."""
    return [q.answer] + [label for label in q.labels if label != q.answer]


def reply_text(knowledge: str, explanations: list[str]) -> str:
    """A reply in the teacher's format: 'Key Information: ...\\nExplanations: <line>\\n<line>...'."""
    return f"Key Information: {knowledge}\nExplanations: " + "\n".join(explanations)
