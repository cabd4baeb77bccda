"""Which candidate block to commit, and how much of it (paper, sections 3.4-3.5).

Inputs are the AR's per-token entropies [C, B] for the C candidate blocks and how many leading
tokens of each block are already committed; committed tokens never count toward an average.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Choice:
    row: int  # index into the candidate blocks
    k: int  # tokens to commit, starting at the block's first open position
    from_dlm: bool = False  # dynamic fallback: take the single token from the DLM's marginal


def _open(entropy: torch.Tensor, committed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    j = torch.arange(entropy.shape[1], device=entropy.device)
    is_open = j[None] >= committed[:, None]
    count = (j[None] + 1 - committed[:, None]).clamp_min(0)  # open tokens up to and including j
    return is_open, count


def mean_open_entropy(entropy: torch.Tensor, committed: torch.Tensor) -> torch.Tensor:
    """Mean entropy over each block's not-yet-committed tokens: [C]."""
    is_open, count = _open(entropy, committed)
    return torch.where(is_open, entropy, 0).sum(1) / count[:, -1].clamp_min(1)


def confident_prefix(entropy: torch.Tensor, committed: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per block, the longest k whose first k open tokens have mean entropy <= tau (0 if none),
    and that prefix's mean entropy."""
    is_open, count = _open(entropy, committed)
    mean = torch.where(is_open, entropy, 0).cumsum(1) / count.clamp_min(1)
    ok = is_open & (mean <= tau)
    k = torch.where(ok, count, 0).max(1).values
    at_k = (committed + k - 1).clamp(0, entropy.shape[1] - 1)
    return k, mean.gather(1, at_k[:, None]).squeeze(1)


def static_choice(entropy: torch.Tensor, committed: torch.Tensor) -> Choice:
    """Static parallelism: the whole block with the lowest mean entropy."""
    row = int(mean_open_entropy(entropy, committed).argmin())
    return Choice(row, entropy.shape[1] - int(committed[row]))


def dynamic_choice(entropy: torch.Tensor, committed: torch.Tensor, tau: float) -> Choice:
    """Dynamic parallelism: the longest confident prefix of any candidate block (ties: lower
    mean). Where no block has two or more confident tokens, one token is committed from the
    DLM's own marginal at the open position the AR is surest of."""
    k, mean = confident_prefix(entropy, committed, tau)
    best = int(k.max())
    if best >= 2:
        tied = torch.where(k == best, mean, float("inf"))
        return Choice(int(tied.argmin()), best)
    first_open = entropy.gather(1, committed.clamp_max(entropy.shape[1] - 1)[:, None]).squeeze(1)
    return Choice(int(first_open.argmin()), 1, from_dlm=True)
