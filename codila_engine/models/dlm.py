"""The diffusion LM: a Dream checkpoint run as transformers' Qwen2 with bidirectional attention.

Dream's parameter names are Qwen2's, so no remote code is needed: build Qwen2ForCausalLM from
the checkpoint's own config.json with is_causal=False. Dream's logits are shifted: the marginal
for position i is softmax(logits[i - 1]) (position 0 uses its own logits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from codila_engine.models.checkpoint import load_checkpoint


def shifted_positions(positions: torch.Tensor) -> torch.Tensor:
    """Where Dream reads the prediction for each position: the hidden state one to the left."""
    return (positions - 1).clamp_min(0)


class Marginals(Protocol):
    """What the samplers need from a DLM: DreamDLM exactly, dual_cache.DualCacheDLM approximately."""

    def marginal_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...


class DreamDLM:
    def __init__(self, model, tokenizer, *, mask_id: int, eos_id: int, pad_id: int | None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.mask_id = mask_id
        self.eos_id = eos_id
        self.pad_id = pad_id

    @classmethod
    def load(cls, path: str | Path, device: torch.device | None = None, dtype: torch.dtype | None = None) -> "DreamDLM":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        model, tokenizer, raw = load_checkpoint(
            path,
            "DLM",
            "Dream",
            lambda raw: "DreamModel" in (raw.get("architectures") or []) or raw.get("model_type") == "Dream",
            Qwen2ForCausalLM,
            Qwen2Config,
            device=device,
            dtype=dtype,
            required=("mask_token_id", "eos_token_id"),
            is_causal=False,
        )
        eos = raw["eos_token_id"]
        eos = eos[0] if isinstance(eos, list) else eos
        pad = raw.get("pad_token_id")
        return cls(
            model,
            tokenizer,
            mask_id=int(raw["mask_token_id"]),
            eos_id=int(eos),
            pad_id=None if pad is None else int(pad),
        )

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @property
    def vocab_rows(self) -> int:
        return self.model.lm_head.weight.shape[0]

    @torch.inference_mode()
    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states [L, H] of one canvas [L]: one bidirectional forward pass."""
        return self.model.model(input_ids=ids.unsqueeze(0)).last_hidden_state[0]

    def head(self, states: torch.Tensor) -> torch.Tensor:
        """Marginal logits [..., V] from hidden states already read at the shifted positions.
        The mask token is never a prediction, so it gets no probability."""
        logits = self.model.lm_head(states).float()
        logits[..., self.mask_id] = float("-inf")
        return logits

    @torch.inference_mode()
    def logits_at(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits [n, V] of the marginals at canvas positions [n]; lm_head runs only there."""
        return self.head(hidden[shifted_positions(positions)])

    def marginal_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One DLM forward over the canvas, marginal logits at `positions`: what a sampler asks."""
        return self.logits_at(self.hidden_states(ids), positions)
