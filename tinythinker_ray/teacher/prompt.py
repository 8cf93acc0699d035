"""The teacher's prompt, as the paper's authors sent it to GPT-4o (datasets/Prompt Engineering.ipynb).

    system: the instruction + k seeded few-shot rationales, each "\\n###\\n{Q}\\nOptions: ...\\nKey
            Information: ...\\nExplanations: <one line per option>\\n###\\n", the whole content stripped
    user:   "{Q}\\nOptions: A. x, B. y, ...\\nKey Information:\\nExplanations: {GT} is correct. Because\\n
            {X} is incorrect. Because\\n..." (the gold option first, then the others), stripped

The reply we expect (what GPT-4o returns) is "Key Information: <one line>\\nExplanations: {GT} is correct.
Because <line>\\n{X} is incorrect. Because <line>...". For local engines `constraint_regex` forces exactly
that shape, in the user turn's option order, so no sample is wasted on format (the verdicts stay the teacher's).
"""

from __future__ import annotations

import random

from ..core.records import Question
from ..core.reply import option_order, options_text, reply_text

INSTRUCTION = (  # request.json of the reference, verbatim
    "Reference examples delimited with ### as a guide to outline the reasoning steps towards the correct "
    "answer in a step-by-step manner. First, concisely summarize the key information or core issue from the "
    "question statement. Then, systematically evaluate each option according to the following format:\n\n"
    "Key Information: [Summarize the key information from the question.]\n"
    "Explanations: [Option] is [correct/incorrect]. Because [Explain the option's features and relevance to "
    "the key concept.]\n\n"
    "Ensure explanations are clear, concise, and diverse by using varied logic, examples, and perspectives. "
    "Be creative to prevent repetition and make sure each step leads to the conclusion. Highlighting the "
    "uniqueness of each example to support diverse reasoning.\n"
)


def system_message(fewshot: list[dict], k: int, seed: int) -> str:
    """The instruction followed by `k` few-shot rationales drawn with a seeded sample (one draw per run)."""
    examples = random.Random(seed).sample(fewshot, k=min(k, len(fewshot)))
    shots = "".join(f"\n###\n{ex['Q']}\nOptions: {ex['Options']}\n"
                    f"{reply_text(ex['Key Information'], ex['Explanations'])}\n###\n" for ex in examples)
    return f"{INSTRUCTION}{shots}".strip()


def user_message(q: Question) -> str:
    gold, *others = option_order(q)
    rest = "".join(f"{label} is incorrect. Because\n" for label in others)
    return (f"{q.stem}\nOptions: {options_text(q)}\nKey Information:\n"
            f"Explanations: {gold} is correct. Because\n{rest}").strip()


def messages(q: Question, system: str) -> list[dict]:
    """The chat request for one question; `system` is `system_message(...)`, shared by every question."""
    return [{"role": "system", "content": system}, {"role": "user", "content": user_message(q)}]


def constraint_regex(q: Question, line_chars: int = 300, verdicts: bool = False) -> str:
    """A regex that admits only well-formed replies for `q`: one Key Information line, then one explanation
    line per option in the user turn's order, each "X is correct. Because ..." or "X is incorrect. Because ...".
    The verdicts stay the teacher's own, so it can disagree with the label and majority relabelling has work, as
    with the authors' GPT-4o; `verdicts=True` writes them too (the gold option correct, the others incorrect).
    Lines are bounded (`line_chars`) so a weak model cannot run past max_tokens inside one line; plain character
    classes and literals keep it within any grammar backend."""
    line = f"\\S[^\\n]{{0,{line_chars - 1}}}"  # starts with a visible character: never blank
    gold, *others = option_order(q)

    def verdict(label: str) -> str:
        said = ("correct" if label == gold else "incorrect") if verdicts else "(correct|incorrect)"
        return f"{label} is {said}\\. Because {line}"

    return f"Key Information: {line}\\nExplanations: " + "\\n".join(verdict(label) for label in [gold, *others])
