"""Target log-probs and NLL (pure torch) against direct computation, and against HF's own loss on real models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinythinker_ray.train.batches import collate_sft, encode_example, tokenizer_for
from tinythinker_ray.train.losses import IGNORE, nll, sft_loss, token_logps, token_logps_from_logits


def _random(shift: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 6, 11, generator=g)
    labels = torch.randint(0, 11, (3, 6), generator=g)
    labels[0, :2] = IGNORE  # a masked prompt
    labels[2, 4:] = IGNORE  # padding
    return logits, labels


def _direct(logits, labels, shift):
    """Per-row sums and token count, one element at a time."""
    sums, count = [], 0
    for b in range(labels.shape[0]):
        total = 0.0
        for t in range(labels.shape[1]):
            pos = t - 1 if shift else t
            if labels[b, t] == IGNORE or pos < 0:
                continue
            total += torch.log_softmax(logits[b, pos], -1)[labels[b, t]].item()
            count += 1
        sums.append(total)
    return torch.tensor(sums), count


@pytest.mark.parametrize("shift", [False, True])
def test_token_logps_match_direct_computation(shift):
    logits, labels = _random(shift)
    logps, mask = token_logps_from_logits(logits, labels, shift=shift)
    sums, count = _direct(logits, labels, shift)
    assert torch.allclose(logps.sum(-1), sums, atol=1e-5)
    assert int(mask.sum()) == count
    assert torch.allclose(nll(logps, mask), -sums.sum() / count, atol=1e-5)


def test_mean_nll_is_cross_entropy_with_ignore_index():
    logits, labels = _random(shift=False, seed=3)
    logps, mask = token_logps_from_logits(logits, labels, shift=False)
    expected = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=IGNORE)
    assert torch.allclose(nll(logps, mask), expected, atol=1e-5)


def _batch(path: str):
    tok, seq2seq = tokenizer_for(path)
    rows = [encode_example(tok, p, t, seq2seq=seq2seq, max_length=64)[:2] for p, t in [
        ("Where is a pen kept?\n(A) desk (B) sky\nRecall:", "Pens are kept on desks."),
        ("Where is a pen kept?\n(A) desk (B) sky\nSummarize:", "So the answer is option A."),
        ("What is cold?\n(A) ice (B) fire (C) sun\nAnalyze: For option C,", "the sun is hot, so it is incorrect.")]]
    batch = {"input_ids": [r[0] for r in rows], "labels": [r[1] for r in rows]}
    return collate_sft(batch, tok.pad_token_id), seq2seq


@pytest.mark.parametrize("family", ["tiny_t5", "tiny_llama"])
def test_sft_loss_and_summed_logps_on_real_models(family, request):
    from tinythinker_ray.models import load_student

    path = request.getfixturevalue(family)
    model, _ = load_student(path)
    model.eval()
    batch, seq2seq = _batch(path)
    with torch.no_grad():
        loss, metrics = sft_loss(model, batch)
        hf = model(**batch).loss  # HF's own label loss: shifted for causal, teacher-forced for T5
        seq = token_logps(model, batch)[0].sum(-1)
        if seq2seq:
            logits = model(**batch).logits
        else:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(loss, hf, atol=1e-5)
    assert metrics["loss"] == pytest.approx(hf.item(), abs=1e-5)
    direct, count = _direct(logits, batch["labels"], shift=not seq2seq)
    assert torch.allclose(seq, direct, atol=1e-4)
    assert metrics["tokens"] == count
    # padding never changes a row's log-prob: row 0 alone gives the same value
    n_in = int(batch["attention_mask"][0].sum())
    n_labels = int((batch["labels"][0] != IGNORE).sum()) if seq2seq else n_in
    single = {"input_ids": batch["input_ids"][:1, :n_in], "attention_mask": batch["attention_mask"][:1, :n_in],
              "labels": batch["labels"][:1, :n_labels]}
    with torch.no_grad():
        assert torch.allclose(token_logps(model, single)[0].sum(-1), seq[:1], atol=1e-4)


def test_causal_output_layer_runs_only_where_targets_are_and_gives_hf_gradients(tiny_llama):
    """token_logps asks a causal LM for logits only at positions some row has a target token: the output layer
    sees fewer positions than the sequence, and the loss and every gradient equal HF's full-logits label loss."""
    from tinythinker_ray.models import load_student

    model, _ = load_student(tiny_llama)
    batch, _ = _batch(tiny_llama)
    seen = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    loss, _ = sft_loss(model, batch)
    hook.remove()
    needed = int((batch["labels"][:, 1:] != IGNORE).any(0).sum())
    assert seen == [needed] and needed < batch["input_ids"].shape[1] - 1
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    hf = model(**batch).loss
    hf.backward()
    assert torch.allclose(loss, hf, atol=1e-5)
    for n, p in model.named_parameters():
        assert torch.allclose(ours[n], p.grad, atol=1e-6), n
