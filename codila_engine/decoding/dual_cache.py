"""Approximate DLM forward: reuse keys and values away from the decoding frontier.

In the spirit of Fast-dLLM's dual cache. Every `refresh` iterations one full bidirectional
forward stores every layer's keys and values. In between, only the active window (the candidate
blocks and the position before them, whose hidden states carry the shifted marginals) is run
through the model; its queries attend to the stored keys and values of the prompt, the suffix
and the blocks outside the window, which are up to `refresh - 1` iterations stale. Exact when
refresh = 1. Off unless asked for (`DecodeConfig.dual_cache`), since it changes the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from codila_engine.models.dlm import DreamDLM, shifted_positions


class DualCacheDLM:
    def __init__(self, dlm: DreamDLM, refresh: int) -> None:
        if refresh < 1:
            raise ValueError(f"the dual cache needs refresh >= 1 iterations, got {refresh}")
        self.dlm, self.refresh = dlm, refresh
        self.calls = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    @torch.inference_mode()
    def marginal_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        read = shifted_positions(positions)
        full = self.calls % self.refresh == 0 or not self.keys or self.keys[0].shape[2] != ids.shape[0]
        lo, hi = (0, ids.shape[0]) if full else (int(read.min()), int(positions.max()) + 1)
        hidden = self._forward(ids, lo, hi, full)
        self.calls += 1
        return self.dlm.head(hidden[read - lo])

    def _forward(self, ids: torch.Tensor, lo: int, hi: int, full: bool) -> torch.Tensor:
        """Final hidden states of canvas positions lo..hi-1, updating the cache there."""
        model = self.dlm.model.model
        x = model.embed_tokens(ids[lo:hi])[None]
        cos, sin = model.rotary_emb(x, torch.arange(lo, hi, device=ids.device)[None])
        if full:
            self.keys, self.values = [], []
        for i, layer in enumerate(model.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            shape = (1, hi - lo, -1, attn.head_dim)
            q = attn.q_proj(h).view(shape).transpose(1, 2)
            k = attn.k_proj(h).view(shape).transpose(1, 2)
            v = attn.v_proj(h).view(shape).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            if full:
                self.keys.append(k)
                self.values.append(v)
            else:
                self.keys[i][:, :, lo:hi] = k
                self.values[i][:, :, lo:hi] = v
            out = F.scaled_dot_product_attention(q, self.keys[i], self.values[i], enable_gqa=True, scale=attn.scaling)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(1, hi - lo, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return model.norm(x)[0]
