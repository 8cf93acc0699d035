"""transformers `generate` as a Sampler: for T5 students (vLLM has no encoder-decoder support) and baselines.

Takes a path or an already-loaded (model, tokenizer), so the training loop can evaluate its live model.
"""

from __future__ import annotations

import torch

from ..config import SamplerConfig
from ..models import is_seq2seq, load_student
from .base import Completion, GenParams, Prompt, Sampler


class HFSampler(Sampler):
    light = True

    @classmethod
    def build(cls, cfg: SamplerConfig, model: str | None) -> HFSampler:
        return cls(model or cfg.model, batch_size=cfg.batch_size)

    def __init__(self, model_path: str | None = None, *, model=None, tokenizer=None, batch_size: int = 16,
                 max_input_tokens: int = 1024, device: str | None = None):
        if model is None:
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            model, tokenizer = load_student(model_path, dtype=dtype, device=device)
        self.model, self.tok = model, tokenizer
        self.seq2seq = is_seq2seq(model.config)
        self.batch_size, self.max_input_tokens = batch_size, max_input_tokens
        # Causal students generate after the prompt: pad on the left so every row ends where generation starts.
        self.tok.padding_side = "right" if self.seq2seq else "left"

    def _text(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if self.tok.chat_template:
            return self.tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in prompt)

    @torch.no_grad()
    def generate(self, prompts: list[Prompt], params: GenParams, regexes=None) -> list[list[Completion]]:
        was_training = self.model.training
        self.model.eval()
        if params.seed is not None:
            torch.manual_seed(params.seed)
        out: list[list[Completion]] = []
        texts = [self._text(p) for p in prompts]
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i:i + self.batch_size]
            enc = self.tok(chunk, return_tensors="pt", padding=True, truncation=True,
                           max_length=self.max_input_tokens).to(self.model.device)
            sample = params.temperature > 0
            gen = self.model.generate(
                **enc, max_new_tokens=params.max_tokens, do_sample=sample, num_return_sequences=params.n,
                temperature=params.temperature if sample else None, top_p=params.top_p if sample else None,
                top_k=0 if sample else None,  # the reference samples with top_k=0 (pure temperature)
                pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
            new = gen if self.seq2seq else gen[:, enc["input_ids"].shape[1]:]
            for j in range(len(chunk)):
                rows = new[j * params.n:(j + 1) * params.n]
                out.append([self._completion(r, params) for r in rows])
        if was_training:
            self.model.train()
        return out

    def _completion(self, ids: torch.Tensor, params: GenParams) -> Completion:
        ids = ids.tolist()
        special = {self.tok.pad_token_id, self.tok.bos_token_id}
        body = [t for t in ids if t not in special]
        ended = self.tok.eos_token_id in body
        if ended:
            body = body[: body.index(self.tok.eos_token_id)]
        text = self.tok.decode(body, skip_special_tokens=True).strip()
        for s in params.stop:
            if s in text:
                text, ended = text[: text.index(s)], True
        return Completion(text=text, finish_reason="stop" if ended or len(body) < params.max_tokens else "length")

    def close(self) -> None:
        self.model = None
