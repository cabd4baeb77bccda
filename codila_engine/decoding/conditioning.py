"""How a block of DLM marginals becomes AR input: soft tokens (paper, section 3.3).

Pure functions on tensors so tests and training share them with the sampler.
"""

from __future__ import annotations

import torch


def ar_marginals(probs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Map DLM marginals [..., V_dlm] onto the first n AR ids: drop what the AR does not share
    (and the mask id), then renormalise."""
    n = keep.shape[0]
    mapped = probs[..., :n].float() * keep.to(probs.device)
    return mapped / mapped.sum(-1, keepdim=True).clamp_min(1e-12)


def soft_tokens(
    probs: torch.Tensor,
    embedding: torch.Tensor,
    keep: torch.Tensor,
    eos_id: int,
    conditioning: str = "soft",
) -> torch.Tensor:
    """AR input embeddings [..., H] for DLM marginals [..., V_dlm].

    soft: e = pi . E_ar, the expected embedding under the marginal.
    top1: E_ar(argmax pi), the ablation that throws the uncertainty away.
    Where the DLM's own argmax is EOS, both use the hard EOS embedding: a blurred EOS would
    tell the AR nothing about where the text ends.
    """
    mapped = ar_marginals(probs, keep)
    n = keep.shape[0]
    if conditioning == "soft":
        out = mapped.to(embedding.dtype) @ embedding[:n]
    elif conditioning == "top1":
        out = embedding[mapped.argmax(-1)]
    else:
        raise ValueError(f"conditioning must be 'soft' or 'top1', got {conditioning!r}")
    is_eos = probs.argmax(-1) == eos_id
    return torch.where(is_eos.unsqueeze(-1), embedding[eos_id], out)


def think_wrap(blocks: torch.Tensor, embedding: torch.Tensor, think_id: int, end_think_id: int) -> torch.Tensor:
    """[C, B, H] -> [C, B + 2, H]: `<think>` e_1..e_B `</think>`, the AR's input layout."""
    c = blocks.shape[0]
    open_ = embedding[think_id].expand(c, 1, -1)
    close = embedding[end_think_id].expand(c, 1, -1)
    return torch.cat([open_, blocks.to(embedding.dtype), close], dim=1)
