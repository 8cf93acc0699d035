"""The one record type every benchmark loads into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    """A multiple-choice question: any number of options, each a (label, text) pair."""

    id: str
    stem: str
    options: tuple[tuple[str, str], ...]
    answer: str  # a label among `options`

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.options]

    def to_dict(self) -> dict:
        return {"id": self.id, "stem": self.stem, "options": [list(o) for o in self.options], "answer": self.answer}

    @classmethod
    def from_dict(cls, d: dict) -> Question:
        return cls(id=str(d["id"]), stem=d["stem"], options=tuple((str(a), str(b)) for a, b in d["options"]),
                   answer=d["answer"])
