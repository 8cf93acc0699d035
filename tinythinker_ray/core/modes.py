"""The phase-1 modes (the paper's ablations) as one table: which stages a mode trains and what its chain sees.

A mode decides three things, all read from here:
  - which stage datasets phase 1 trains (`Mode.stages`; summarize always trains),
  - which stages the chain runs at inference (`run_chain` reads `recall` / `analyze`),
  - what each training row's input holds: a stage input never contains a part its mode's chain does not
    produce (`mode_input`, `mode_rows`), as the authors' "Prepare Ablation" notebook builds one dataset per mode.
Adding a mode is one line in MODES.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import format as fmt
from .records import Question


@dataclass(frozen=True)
class Mode:
    name: str
    recall: bool  # a Recall stage: trained, generated first, and shown to the later stages
    analyze: bool  # an Analyze stage per option: trained, generated, and shown to Summarize
    analyze_sees_recall: bool = True  # the Analyze input holds the recall (only meaningful with both stages)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stage datasets this mode trains, in schedule order."""
        return tuple(s for s, on in (("recall", self.recall), ("analyze", self.analyze), ("summarize", True)) if on)


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("summarize", recall=False, analyze=False),
    Mode("recall_summarize", recall=True, analyze=False),
    Mode("analyze_summarize", recall=False, analyze=True),
    Mode("recall_analyze_summarize", recall=True, analyze=True),
)}
FULL = "recall_analyze_summarize"


def get_mode(name: str) -> Mode:
    """The table's entry for `name`; a KeyError names the modes there are (config validation turns it into a
    ConfigError naming the key)."""
    if name not in MODES:
        raise KeyError(f"unknown mode {name!r} (modes: {', '.join(MODES)})")
    return MODES[name]


def analyze_recall(mode: Mode, recall: str | None) -> str | None:
    """The recall an Analyze input of `mode` shows (None: the input has no Recall part)."""
    return recall if mode.recall and mode.analyze_sees_recall else None


def mode_input(text: str, mode: Mode) -> str:
    """A teacher stage input (which holds every earlier stage) rewritten as `mode`'s chain would build it:
    the parts of stages the mode does not run are cut out. Raises ValueError on a text that is no stage input."""
    p = fmt.parse_stage_input(text)
    q = Question("", p["stem"], tuple(p["options"]), p["options"][0][0])  # the answer is not part of any input
    recall = p["recall"] if mode.recall else None
    if p["stage"] == "recall":
        return fmt.recall_input(q)
    if p["stage"] == "analyze":
        return fmt.analyze_input(q, p["option"], analyze_recall(mode, recall))
    return fmt.summarize_input(q, recall, p["analyses"] if mode.analyze else None)


class BadStageRow(ValueError):
    """A stage row whose input does not parse; `index` is its 0-based position in the rows given."""

    def __init__(self, index: int, why: str):
        super().__init__(f"row {index}: {why}")
        self.index, self.why = index, why


def mode_rows(rows: Iterable[dict], mode: Mode) -> list[dict]:
    """Stage rows {"input", "target", ...} with inputs rewritten for `mode`; rows that become equal in
    (input, target) are kept once, in order (the authors deduplicate the ablation datasets the same way).
    A row whose input is no stage input raises BadStageRow."""
    out, seen = [], set()
    for i, r in enumerate(rows):
        try:
            text = mode_input(r["input"], mode)
        except ValueError as e:
            raise BadStageRow(i, str(e)) from None
        if (text, r["target"]) not in seen:
            seen.add((text, r["target"]))
            out.append({**r, "input": text})
    return out


def mode_sample(q: Question, mode: Mode) -> str:
    """The question's stage inputs as `mode` trains them (the teacher's full rows rewritten by mode_input, as
    phase 1 does) and the summarize target, with placeholders for the generated parts: what `data show` prints."""
    recall, analyses = "<recalled knowledge>", [(lab, f"<analysis of {lab}>") for lab in q.labels]
    full = {"recall": fmt.recall_input(q), "analyze": fmt.analyze_input(q, q.labels[0], recall),
            "summarize": fmt.summarize_input(q, recall, analyses)}
    lines = [f"--- mode {mode.name}: trains {', '.join(mode.stages)} ---"]
    for stage in mode.stages:
        lines += [f"--- {stage} input{' (first option)' if stage == 'analyze' else ''} ---", mode_input(full[stage], mode)]
    return "\n".join([*lines, "--- summarize target ---", fmt.summarize_target(q.answer)])
