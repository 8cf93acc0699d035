"""The RPO objective (sigmoid DPO + alpha x chosen NLL) against the formula computed element by element."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from tinythinker_ray.train.batches import collate_pairs, encode_example, encode_pair_rows, tokenizer_for
from tinythinker_ray.train.losses import (
    IGNORE,
    pair_logps,
    rpo_loss,
    rpo_step_loss,
    token_logps,
    token_logps_from_logits,
)


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _seq_logp(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> tuple[float, int]:
    """Summed log-prob of one row's target and its token count, one position at a time."""
    total, count = 0.0, 0
    for t in range(labels.shape[0]):
        pos = t - 1 if shift else t
        if labels[t] == IGNORE or pos < 0:
            continue
        total += torch.log_softmax(logits[pos].double(), -1)[labels[t]].item()
        count += 1
    return total, count


def _direct(pol, ref, labels, shift, beta, alpha):
    """The RPO loss and mean margin from per-row sums: rows [0, B) chosen, [B, 2B) rejected."""
    b = labels.shape[0] // 2
    pi = [_seq_logp(pol[i], labels[i], shift) for i in range(2 * b)]
    rf = [_seq_logp(ref[i], labels[i], shift) for i in range(2 * b)]
    margins = [beta * ((pi[i][0] - rf[i][0]) - (pi[b + i][0] - rf[b + i][0])) for i in range(b)]
    dpo = -sum(_log_sigmoid(m) for m in margins) / b
    chosen_nll = -sum(pi[i][0] for i in range(b)) / sum(pi[i][1] for i in range(b))  # token mean, whole batch
    return dpo + alpha * chosen_nll, sum(margins) / b, chosen_nll


def _random_pairs(shift: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    pol, ref = torch.randn(8, 7, 13, generator=g), torch.randn(8, 7, 13, generator=g)
    labels = torch.randint(0, 13, (8, 7), generator=g)
    if shift:
        labels[:, :2] = IGNORE  # causal rows: a masked prompt
    labels[1, 5:] = IGNORE  # padding
    labels[6, 4:] = IGNORE
    return pol, ref, labels


@pytest.mark.parametrize("shift", [False, True], ids=["seq2seq", "causal"])
@pytest.mark.parametrize("beta,alpha", [(0.5, 0.5), (0.1, 0.0), (0.1, 1.0)])
def test_rpo_loss_matches_the_formula_on_random_logits(shift, beta, alpha):
    pol, ref, labels = _random_pairs(shift, seed=int(beta * 10 + alpha * 100))
    logps, mask = token_logps_from_logits(pol, labels, shift=shift)
    ref_logps, _ = token_logps_from_logits(ref, labels, shift=shift)
    seq, ref_seq = logps.sum(-1), ref_logps.sum(-1)
    chosen_nll = -logps[:4].sum() / mask[:4].sum()
    loss, metrics = rpo_loss(seq[:4], seq[4:], ref_seq[:4], ref_seq[4:], chosen_nll, beta, alpha)
    want_loss, want_margin, want_nll = _direct(pol, ref, labels, shift, beta, alpha)
    assert loss.item() == pytest.approx(want_loss, rel=1e-5, abs=1e-5)
    assert metrics["margin"] == pytest.approx(want_margin, rel=1e-5, abs=1e-5)
    assert metrics["nll"] == pytest.approx(want_nll, rel=1e-5)
    reward_gap = metrics["reward_chosen"] - metrics["reward_rejected"]
    assert reward_gap == pytest.approx(want_margin, rel=1e-5, abs=1e-5)


def test_rpo_gradient_is_the_dpo_gradient_plus_nll():
    g = torch.Generator().manual_seed(1)
    pc, pr = torch.randn(5, generator=g, requires_grad=True), torch.randn(5, generator=g, requires_grad=True)
    rc, rr = torch.randn(5, generator=g), torch.randn(5, generator=g)
    nll = torch.tensor(2.0, requires_grad=True)
    loss, _ = rpo_loss(pc, pr, rc, rr, nll, beta=0.5, alpha=0.5)
    loss.backward()
    margins = 0.5 * ((pc - rc) - (pr - rr)).detach()
    want = -0.5 * torch.sigmoid(-margins) / 5  # d/dpi_c of -mean(logsigmoid(beta * margin))
    assert torch.allclose(pc.grad, want, atol=1e-6) and torch.allclose(pr.grad, -want, atol=1e-6)
    assert nll.grad.item() == pytest.approx(0.5)


def test_policy_equal_to_reference_gives_log2_and_zero_rewards():
    x = torch.randn(6)
    loss, m = rpo_loss(x, x - 1, x, x - 1, torch.tensor(0.0), beta=0.5, alpha=0.5)
    assert loss.item() == pytest.approx(math.log(2)) and m["margin"] == 0 and m["reward_accuracy"] == 0


PAIRS = [("Where do fish live?\n(A) water (B) sky\nRecall:", "Fish live in water.", "Fish fly."),
         ("Q two?\n(A) up (B) down\nRecall: Up is up.\nAnalyze: For option A,", "up is right.",
          "this one is long and wrong, longer than the chosen one.")]


def test_ipo_is_one_entry_of_the_pair_loss_table():
    pc, pr, rc, rr = (torch.tensor(v) for v in ([-3.0, -1.0], [-4.0, -1.5], [-3.5, -1.2], [-3.6, -1.4]))
    nll_c = torch.tensor(0.7)
    h = (pc - rc) - (pr - rr)
    loss, metrics = rpo_loss(pc, pr, rc, rr, nll_c, beta=0.5, alpha=0.2, kind="ipo")
    assert loss.item() == pytest.approx(((h - 1 / (2 * 0.5)) ** 2).mean().item() + 0.2 * 0.7, rel=1e-6)
    assert metrics["margin"] == pytest.approx((0.5 * h).mean().item(), rel=1e-6)


@pytest.mark.parametrize("kind", ["tiny_t5", "tiny_llama"])
def test_pair_batch_scores_each_side_like_a_single_row_on_real_models(kind, request):
    """The concatenated chosen+rejected forward gives the same per-side sums as scoring each side alone."""
    from tinythinker_ray.models import load_student

    path = request.getfixturevalue(kind)
    model, tok = load_student(path)
    model.eval()
    names = ("prompt", "chosen", "rejected")
    columns = {name: np.array([row[k] for row in PAIRS]) for k, name in enumerate(names)}
    cols = encode_pair_rows(columns, model_path=path, max_length=64)
    cols["ref_chosen_logp"] = np.zeros(2, dtype=np.float32)
    cols["ref_rejected_logp"] = np.zeros(2, dtype=np.float32)
    batch = collate_pairs(cols, tok.pad_token_id)
    assert batch["input_ids"].shape[0] == 4
    with torch.no_grad():
        chosen, rejected, chosen_nll = pair_logps(model, batch)
    tk, seq2seq = tokenizer_for(path)
    for i, (p, c, r) in enumerate(PAIRS):
        for side, target in ((chosen, c), (rejected, r)):
            ids, labels, _ = encode_example(tk, p, target, seq2seq=seq2seq, max_length=64)
            one = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                   "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
            with torch.no_grad():
                assert side[i].item() == pytest.approx(token_logps(model, one)[0].sum().item(), rel=1e-4, abs=1e-3)
    # with the reference = the policy itself, rewards are 0 and the loss is log 2 + alpha * NLL
    batch["ref_chosen_logp"], batch["ref_rejected_logp"] = chosen, rejected
    loss, metrics = partial(rpo_step_loss, beta=0.5, alpha=0.5)(model, batch)
    assert metrics["margin"] == pytest.approx(0.0, abs=1e-4)
    assert loss.item() == pytest.approx(math.log(2) + 0.5 * chosen_nll.item(), rel=1e-4)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
