"""From stage rows to model batches: tokenization in Ray Data, padding in the per-batch collate.

Rows {"input", "target", ...} become token-id lists once, on the driver's Ray Data pipeline (never in the
training workers, which only pull their shard):
  seq2seq (T5): input_ids = tok(input), labels = tok(target)  -- both end in </s>;
  causal:       input_ids = tok(input) + tok(" " + target) + eos, labels = -100 over the prompt, then the target.
Nothing is cut unless `student.max_length` is set (the authors never truncate in phase 1); then the prompt keeps
its tail (the stage cue "Analyze: For option B," sits at the end), the target its head, and every cut row is
flagged in a "truncated" column that phase 1 counts. `collate_sft` pads a batch to its own longest row.

Phase 2 reuses `encode_example` for chosen/rejected targets and adds its own encode/collate pair beside these.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from ..errors import ConfigError
from .losses import IGNORE

WINDOW_BATCHES = 8  # rows are shuffled (and length-bucketed) within windows of this many batches
# rows per Ray block when a list becomes a dataset: from_items' default (up to 200 blocks) cut a 600-row stage
# into 3-row blocks, and Ray's shuffle and tokenization of them took 15-40 s of tiny tasks per stage
BLOCK_ROWS = 4096


@functools.lru_cache(maxsize=4)
def tokenizer_for(model_path: str):
    """(tokenizer, is seq2seq) of an HF folder, loaded once per process (Ray reuses its worker processes)."""
    from transformers import AutoConfig, AutoTokenizer

    from ..models import is_seq2seq, resolve_model

    path = resolve_model(model_path)  # a built-in or a URI becomes this node's own copy
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, is_seq2seq(AutoConfig.from_pretrained(path))


def encode_example(tok, prompt: str, target: str, *, seq2seq: bool, max_length: int | None
                   ) -> tuple[list[int], list[int], bool]:
    """(input_ids, labels, cut) of one (prompt, target); the prompt is tokenized exactly as inference will see it.
    `cut`: max_length shortened the prompt or the target."""
    prompt_ids = tok(prompt)["input_ids"]
    target_ids = (tok(target)["input_ids"] if seq2seq
                  else tok(" " + target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    cut = max_length is not None and max(len(prompt_ids), len(target_ids)) > max_length
    if cut:
        prompt_ids, target_ids = prompt_ids[-max_length:], target_ids[:max_length]
    if seq2seq:
        return prompt_ids, target_ids, cut
    return prompt_ids + target_ids, [IGNORE] * len(prompt_ids) + target_ids, cut


def encode_rows(batch: dict[str, np.ndarray], *, model_path: str, max_length: int | None) -> dict[str, np.ndarray]:
    """Ray Data `map_batches` UDF (numpy format): {"input", "target"} -> {"input_ids", "labels", "length",
    "truncated"}."""
    tok, seq2seq = tokenizer_for(model_path)
    rows = [encode_example(tok, str(p), str(t), seq2seq=seq2seq, max_length=max_length)
            for p, t in zip(batch["input"], batch["target"], strict=True)]
    return {
        "input_ids": _ragged([ids for ids, _, _ in rows]),
        "labels": _ragged([labels for _, labels, _ in rows]),
        "length": np.array([len(ids) for ids, _, _ in rows], dtype=np.int64),
        "truncated": np.array([cut for _, _, cut in rows], dtype=bool),
    }


def _ragged(rows: list[list[int]]) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = [np.asarray(r, dtype=np.int64) for r in rows]
    return out


def tokenize_dataset(ds, model_path: str, max_length: int | None):
    """Lazy Ray Data tokenization of a stage dataset; only the token columns travel on to the workers."""
    return ds.map_batches(encode_rows, fn_kwargs={"model_path": model_path, "max_length": max_length},
                          batch_format="numpy", batch_size=256)


def shuffled_dataset(rows: list[dict], seed: int | None):
    """The rows in one random order (the same for a seed) as a Ray Dataset of BLOCK_ROWS-row blocks.

    Stage files and pair lists keep a question's rows side by side and an epoch reshuffles only the block order
    and rows within windows of a few batches (epoch_stream), so without one global shuffle every batch is drawn
    from one stretch of the file: the learning check's students then learned far slower. The driver already
    holds the rows, so it shuffles them itself.
    """
    import ray.data

    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // BLOCK_ROWS)))


def prepare_stage(rows: list[dict], *, model_path: str, max_length: int | None, batch_size: int, world_size: int,
                  seed: int | None = None):
    """Shuffle and tokenize a stage's rows once into Ray's object store -> (dataset, batches per worker per epoch,
    rows cut by max_length).

    Epochs re-read the token blocks, not the text. Ray Train splits each dataset equally across workers
    (streaming_split(equal=True)), so each gets rows // world rows, cut into batch_size (drop_last) batches.
    """
    ds = tokenize_dataset(shuffled_dataset(rows, seed), model_path, max_length).materialize()
    truncated = count_true(ds, "truncated") if max_length is not None else 0
    return ds, ds.count() // world_size // batch_size, truncated


def count_true(ds, column: str) -> int:
    """How many rows of a materialized dataset have `column` set. Not `ds.sum`: Ray Data aggregates through a
    shuffle whose tasks request memory, which a Ray Tune trial's placement group (CPU only) cannot place, so
    `tinythinker tune` and the learning check's trials failed at this count."""
    return sum(int(b[column].sum()) for b in ds.iter_batches(batch_size=None, batch_format="numpy"))


def check_truncated(cut: dict[str, tuple[int, int]], max_length: int | None, share: float) -> None:
    """cut {stage: (rows cut, rows)}: refuse a stage with more than `share` of its rows cut by max_length."""
    for stage, (n_cut, n) in cut.items():
        if n and n_cut / n > share:
            raise ConfigError(f"config key 'student.max_length': {max_length} tokens cut {n_cut} of {n} {stage} rows "
                              f"({n_cut / n:.1%}, more than student.max_truncated_share {share:.1%}); raise it, "
                              "or set it to null to cut nothing")


def epoch_stream(ds, *, batch_size: int, bucket: bool):
    """What one epoch reads: blocks in a new random order, rows reshuffled within windows of WINDOW_BATCHES batches.

    With `bucket` (needs a "length" column) each window is cut into batches of similar length, in random
    order: less padding, still a different mix every epoch. Applied by `fit` to every dataset it gets.
    """
    out = ds.randomize_block_order().map_batches(
        _shuffle_window, fn_kwargs={"batch_size": batch_size, "bucket": bucket}, batch_format="numpy",
        batch_size=batch_size * WINDOW_BATCHES)
    out.context.enable_progress_bars = False  # one bar per stage per epoch on every worker is noise
    return out


def _shuffle_window(batch: dict[str, np.ndarray], *, batch_size: int, bucket: bool,
                    seed=None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(next(iter(batch.values()))))
    if bucket:
        order = order[np.argsort(batch["length"][order], kind="stable")]
        groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        order = np.concatenate([groups[i] for i in rng.permutation(len(groups))])
    return {k: v[order] for k, v in batch.items()}


def memory_shards(ds, world_size: int) -> list[list]:
    """A small materialized stage cut into `world_size` equal shards (rows // world_size each, as Ray Train's
    equal split), each a list of block references to numpy columns that its worker fetches once.

    Small stages skip Ray Train's own dataset split: it starts a DatasetManager and a SplitCoordinator actor per
    stage per run (~2 CPU-s each; 7 of a 20-step, three-stage run's 28 CPU-s of start-up on 2 cores). The cut is
    fixed by the driver's seeded order, so a resumed worker gets the same rows back.
    """
    return [shard.to_numpy_refs() for shard in ds.split(world_size, equal=True)]


def read_blocks(refs: list) -> dict[str, np.ndarray]:
    """A worker's shard of a stage (memory_shards), fetched once from the object store into numpy columns."""
    import ray

    parts = [p for p in ray.get(list(refs)) if p and len(next(iter(p.values())))]
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def memory_epoch(rows: dict[str, np.ndarray], *, batch_size: int, bucket: bool, collate, seed=None):
    """One epoch of a shard kept in memory: the rows reshuffled (as `epoch_stream` does, the whole shard being
    one window) in the order `seed` gives, cut into full batches, each collated."""
    if not rows:
        return
    rows = _shuffle_window(rows, batch_size=batch_size, bucket=bucket and "length" in rows, seed=seed)
    n = len(next(iter(rows.values())))
    for i in range(0, n - batch_size + 1, batch_size):
        yield collate({k: v[i:i + batch_size] for k, v in rows.items()})


def pad(seqs, value: int) -> torch.Tensor:
    """Right-pad 1-D int sequences to the longest one."""
    longest = max(len(s) for s in seqs)
    out = np.full((len(seqs), longest), value, dtype=np.int64)
    for i, s in enumerate(seqs):  # numpy copies the rows: Ray hands read-only arrays, which torch warns about
        out[i, : len(s)] = s
    return torch.from_numpy(out)


def collate_sft(batch: dict[str, np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """A Ray batch of token rows -> model tensors padded to this batch's longest row (labels padded with -100)."""
    input_ids = pad(batch["input_ids"], pad_id)
    lengths = torch.tensor([len(s) for s in batch["input_ids"]])
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": pad(batch["labels"], IGNORE)}


# ----- phase 2: preference pairs ------------------------------------------------------------------------------------

PAIR_COLUMNS = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")


def encode_pair_rows(batch: dict[str, np.ndarray], *, model_path: str, max_length: int | None
                     ) -> dict[str, np.ndarray]:
    """Ray Data UDF: {"prompt", "chosen", "rejected"} -> token columns of both sides (as `encode_example`) and
    "truncated" (either side cut)."""
    tok, seq2seq = tokenizer_for(model_path)
    out: dict[str, list] = {c: [] for c in PAIR_COLUMNS}
    truncated = []
    for prompt, chosen, rejected in zip(batch["prompt"], batch["chosen"], batch["rejected"], strict=True):
        cut_any = False
        for side, target in (("chosen", chosen), ("rejected", rejected)):
            ids, labels, cut = encode_example(tok, str(prompt), str(target), seq2seq=seq2seq, max_length=max_length)
            out[f"{side}_input_ids"].append(ids)
            out[f"{side}_labels"].append(labels)
            cut_any |= cut
        truncated.append(cut_any)
    return {**{c: _ragged(v) for c, v in out.items()}, "truncated": np.array(truncated, dtype=bool)}


def collate_pairs(batch: dict[str, np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of B pairs -> one padded batch of 2B rows (chosen first, then rejected: one forward scores
    both), with the reference log-prob columns as float tensors when the batch has them."""
    out = collate_sft({"input_ids": [*batch["chosen_input_ids"], *batch["rejected_input_ids"]],
                       "labels": [*batch["chosen_labels"], *batch["rejected_labels"]]}, pad_id)
    for key in ("ref_chosen_logp", "ref_rejected_logp"):
        if key in batch:
            out[key] = torch.as_tensor(np.asarray(batch[key], dtype=np.float32))
    return out
