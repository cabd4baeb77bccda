"""Noise for training: which tokens the models must predict. Pure functions of ids and a generator.

DLM (masked diffusion, as LLaDA/Dream): per sequence t ~ U(eps, 1); either every target token is
masked with probability t (the ELBO's noise), or contiguous spans covering about t of the
region are masked (infilling; with `span_tokens`, spans of a length drawn log-uniformly in that
range whatever t is, so that a fill with most of the file as context is not rare), or a span
is masked after padding was inserted at its end (variable-length infilling as in Dream-Coder:
a span of N masks holds the middle followed by pad tokens, so the model learns to close a
too-long span with `<|endoftext|>`). Each masked token's loss weight is 1/(t n) for a region
of n tokens: the sum over a sequence is the ELBO term normalised by length.

Position 0 is never a target: Dream predicts token i from position i-1, and position 0 has
no left neighbour (its logits already predict token 1).

CoDiLA (Appendix A.1): the target region is cut into blocks of B tokens; with
p = (1 - eps) t + eps, t ~ U(0.2, 0.8), each block is masked with probability p, at least one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

IGNORE = -100  # label of positions that carry no loss


@dataclass(frozen=True)
class DlmNoise:
    span_fraction: float = 0.3  # sequences masked as contiguous spans
    pad_fraction: float = 0.2  # sequences masked as one span with padding inserted at its end
    max_spans: int = 3
    eps: float = 1e-3
    span_tokens: tuple[int, int] | None = None  # span mode's total masked tokens, log-uniform in [lo, hi]

    def __post_init__(self) -> None:
        if self.span_fraction < 0 or self.pad_fraction < 0 or self.span_fraction + self.pad_fraction > 1:
            raise ValueError("span_fraction and pad_fraction must be >= 0 and sum to at most 1")
        if self.span_tokens is not None and not 1 <= self.span_tokens[0] <= self.span_tokens[1]:
            raise ValueError(f"span_tokens {self.span_tokens}: give 1 <= LO <= HI tokens")


@dataclass
class Masked:
    noisy: torch.Tensor  # long [b, L]: input ids with the mask id at targets
    labels: torch.Tensor  # long [b, L]: true ids at targets, IGNORE elsewhere
    weights: torch.Tensor  # float [b, L]: loss weight per target, 0 elsewhere


def _uniform(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g))


def _randint(low: int, high: int, g: torch.Generator) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _composition(total: int, parts: int, g: torch.Generator) -> list[int]:
    """`total` split into `parts` non-negative integers, uniformly at random."""
    cuts = sorted(_randint(0, total, g) for _ in range(parts - 1))
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def span_total(span_tokens: tuple[int, int], n: int, g: torch.Generator) -> int:
    """Masked tokens of one span-mode sequence: log-uniform in span_tokens, at most the region n."""
    lo, hi = (math.log(x) for x in span_tokens)
    return max(1, min(n, round(math.exp(lo + (hi - lo) * _uniform(g)))))


def span_layout(start: int, n: int, masked: int, spans: int, g: torch.Generator) -> list[tuple[int, int]]:
    """`spans` disjoint non-empty spans, `masked` tokens in all, placed at random in [start, start+n)."""
    spans = max(1, min(spans, masked, n - masked + 1))
    lengths = [1 + x for x in _composition(masked - spans, spans, g)]
    gaps = _composition(n - masked - (spans - 1), spans + 1, g)
    out, pos = [], start
    for i, length in enumerate(lengths):
        pos += gaps[i] + (1 if i else 0)
        out.append((pos, pos + length))
        pos += length
    return out


def dlm_mask(
    ids: torch.Tensor,
    target_starts: torch.Tensor,
    lengths: torch.Tensor,
    *,
    mask_id: int,
    pad_id: int,
    generator: torch.Generator,
    noise: DlmNoise = DlmNoise(),
) -> Masked:
    """Masked-diffusion noise for a batch of sequences (see the module docstring)."""
    b, seq_len = ids.shape
    clean = ids.clone()
    targets = torch.zeros(b, seq_len, dtype=torch.bool)
    weights = torch.zeros(b, seq_len)
    g = generator
    for row in range(b):
        start = max(int(target_starts[row]), 1)
        n = seq_len - start
        if n <= 0:
            continue
        t = (1 - noise.eps) * _uniform(g) + noise.eps
        mode = _uniform(g)
        if mode < noise.pad_fraction:
            total = max(1, round(t * n))
            pads = _randint(1, total, g)
            middle = total - pads
            end_real = max(min(int(lengths[row]), seq_len - pads), start + middle)
            a = _randint(start, end_real - middle, g)
            cut = a + middle
            clean[row, cut + pads :] = ids[row, cut : seq_len - pads]
            clean[row, cut : cut + pads] = pad_id
            targets[row, a : a + total] = True
            weights[row, a : a + total] = 1.0 / total
        elif mode < noise.pad_fraction + noise.span_fraction:
            total = max(1, round(t * n)) if noise.span_tokens is None else span_total(noise.span_tokens, n, g)
            for a, e in span_layout(start, n, total, _randint(1, noise.max_spans, g), g):
                targets[row, a:e] = True
            weights[row, targets[row]] = 1.0 / total
        else:
            draw = torch.rand(n, generator=g) < t
            targets[row, start:] = draw
            weights[row, start:][draw] = 1.0 / (t * n)
    noisy = torch.where(targets, mask_id, clean)
    labels = torch.where(targets, clean, IGNORE)
    return Masked(noisy, labels, weights)


@dataclass
class BlockMasked:
    noisy: torch.Tensor  # long [b, L]: every position of a masked block is the mask id
    labels: torch.Tensor  # long [b, L]: true ids in masked blocks, IGNORE elsewhere
    blocks: torch.Tensor  # long [n, 2]: (row, start) of each masked block, start block-aligned
    block_labels: torch.Tensor  # long [n, B]: the true tokens of each masked block


def block_mask_probability(t: float, eps: float = 1e-3) -> float:
    return (1 - eps) * t + eps


def codila_block_mask(
    ids: torch.Tensor,
    target_starts: torch.Tensor,
    *,
    block_size: int,
    mask_id: int,
    generator: torch.Generator,
    t_range: tuple[float, float] = (0.2, 0.8),
    eps: float = 1e-3,
) -> BlockMasked:
    """Block-level masking of each row's target region (blocks of B from the region's start;
    a trailing partial block is context, never a target)."""
    b, seq_len = ids.shape
    noisy = ids.clone()
    labels = torch.full_like(ids, IGNORE)
    blocks: list[tuple[int, int]] = []
    lo, hi = t_range
    for row in range(b):
        start = max(int(target_starts[row]), 1)
        n_blocks = (seq_len - start) // block_size
        if n_blocks == 0:
            raise ValueError(
                f"row {row}: its target region ({seq_len - start} tokens) holds no block of {block_size}; "
                "use a longer seq_len or shorter prompts"
            )
        p = block_mask_probability(lo + (hi - lo) * _uniform(generator), eps)
        chosen = (torch.rand(n_blocks, generator=generator) < p).nonzero().flatten().tolist()
        if not chosen:
            chosen = [_randint(0, n_blocks - 1, generator)]
        for j in chosen:
            a = start + j * block_size
            noisy[row, a : a + block_size] = mask_id
            labels[row, a : a + block_size] = ids[row, a : a + block_size]
            blocks.append((row, a))
    index = torch.tensor(blocks, dtype=torch.long).reshape(-1, 2)
    offsets = index[:, 1:] + torch.arange(block_size)
    return BlockMasked(noisy, labels, index, ids[index[:, :1], offsets])
