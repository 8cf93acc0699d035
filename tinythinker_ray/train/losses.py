"""Training objectives as pure torch: token log-probs of a target under a seq2seq or causal student.

A batch (see batches.py) holds `input_ids`, `attention_mask` and `labels` with -100 wherever no loss is taken:
for T5 the labels are the target tokens; for a causal LM they run along `input_ids` (prompt + " " + target +
eos) with the prompt and the padding masked. Everything here works from those three tensors, for both
families, so SFT, DPO and RPO share one definition of "log-probability of the target".

An objective's loss function has the shape `loss(model, batch) -> (loss tensor, {name: float})`; the loop
backpropagates the tensor and logs the floats. Phase 2's is `rpo_step_loss`: a preference term from
PAIR_LOSSES (`reflect.loss`; the authors': sigmoid DPO) plus alpha x the chosen side's NLL.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F

IGNORE = -100


def _module(model):
    return getattr(model, "module", model)  # a DeepSpeed engine wraps the HF model


def is_seq2seq_model(model) -> bool:
    return bool(getattr(_module(model).config, "is_encoder_decoder", False))


def token_logps_from_logits(logits: torch.Tensor, labels: torch.Tensor, *, shift: bool
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each label token [B, T], mask [B, T]). `shift`: causal logits at t predict the token at t+1."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    safe = labels.masked_fill(~mask, 0)
    logps = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return logps * mask, mask


def token_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model on a batch; per-token target log-probs and their mask, for either family."""
    if is_seq2seq_model(model):
        # Teacher forcing: the decoder reads the labels shifted right (pad for -100), as HF does with labels=.
        decoder_input_ids = _module(model).prepare_decoder_input_ids_from_labels(labels=batch["labels"])
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    decoder_input_ids=decoder_input_ids, use_cache=False)
        return token_logps_from_logits(out.logits, batch["labels"], shift=False)
    if not _takes_logits_to_keep(_module(model)):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        return token_logps_from_logits(out.logits, batch["labels"], shift=True)
    labels = batch["labels"][:, 1:]  # the logits at t predict the token at t + 1
    # The output layer only where some row has a target token: prompts are masked, so this skips most of the
    # sequence (the learning check's steps 10-25% faster; with a 150k vocabulary the logits are most of a
    # step's activation memory). Positions no row needs would only be multiplied by a zero mask.
    keep = (labels != IGNORE).any(0).nonzero().squeeze(-1)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                logits_to_keep=keep)
    return token_logps_from_logits(out.logits, labels[:, keep], shift=False)


@functools.lru_cache(maxsize=8)
def _forward_params(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


def _takes_logits_to_keep(module) -> bool:
    """HF causal LMs take `logits_to_keep` (an int, or a 1-D tensor of positions) since transformers 4.50."""
    return "logits_to_keep" in _forward_params(type(module))


def nll(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood, the mean over all target tokens of the batch."""
    return -logps.sum() / mask.sum().clamp(min=1)


def sft_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Phase 1: mean token NLL of the target (the HF `labels=` loss, computed here for both families)."""
    logps, mask = token_logps(model, batch)
    loss = nll(logps, mask)
    return loss, {"loss": loss.item(), "tokens": float(mask.sum())}


# ----- phase 2: a preference loss + NLL (RPO) ----------------------------------------------------------------

# Per pair, from h = (pi_c - ref_c) - (pi_r - ref_r) (summed target log-probs) and beta; names as TRL's loss_type.
PAIR_LOSSES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "sigmoid": lambda h, beta: -F.logsigmoid(beta * h),  # DPO (the authors')
    "ipo": lambda h, beta: (h - 1 / (2 * beta)) ** 2,  # IPO (Azar et al., 2023)
}


def rpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, chosen_nll: torch.Tensor,
             beta: float, alpha: float, kind: str = "sigmoid") -> tuple[torch.Tensor, dict[str, float]]:
    """A preference loss on summed target log-probs against a frozen reference, plus alpha x NLL of the chosen side.

    sigmoid: -logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged over pairs, + alpha * chosen_nll
    (TRL's `rpo_alpha`: the chosen targets' token-mean NLL); alpha 0 = plain DPO. Rewards: beta * (pi - ref);
    margin = chosen - rejected.
    """
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    margins = chosen_rewards - rejected_rewards
    dpo = PAIR_LOSSES[kind](margins / beta, beta).mean()
    loss = dpo + alpha * chosen_nll
    return loss, {"loss": loss.item(), "dpo_loss": dpo.item(), "nll": chosen_nll.item(),
                  "reward_chosen": chosen_rewards.mean().item(),
                  "reward_rejected": rejected_rewards.mean().item(),
                  "margin": margins.mean().item(), "reward_accuracy": (margins > 0).float().mean().item()}


def pair_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward over a pair batch (chosen rows first, then rejected: `collate_pairs`) ->
    (summed chosen log-probs [B], summed rejected log-probs [B], chosen token-mean NLL)."""
    logps, mask = token_logps(model, batch)
    n = logps.shape[0] // 2
    seq = logps.sum(-1)
    return seq[:n], seq[n:], nll(logps[:n], mask[:n])


def rpo_step_loss(model, batch: dict, *, beta: float, alpha: float, kind: str = "sigmoid"
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Phase 2's objective loss: the policy's pair log-probs against the precomputed reference columns."""
    chosen, rejected, chosen_nll = pair_logps(model, batch)
    return rpo_loss(chosen, rejected, batch["ref_chosen_logp"], batch["ref_rejected_logp"], chosen_nll,
                    beta, alpha, kind)
