"""Dream's own sampler (`diffusion_generate(alg="entropy")`), reproduced on the canvas.

The `dlm` baseline commits a fixed K tokens per iteration, ranked by the entropy of the raw
marginals. Dream itself differs, and `--decoder dream` follows it exactly:
- a schedule: `steps` DLM forwards over time t from 1 to `eps` (linspace of steps + 1 points);
  at step i with n tokens still masked, int(n * (1 - t[i+1] / t[i])) are committed, and at the
  last step all the rest (a step may commit none);
- the ranking: tokens are drawn from the marginal after temperature, top-p and top-k, and
  positions are ranked by the negative entropy of that same filtered distribution (plus 1e-10
  inside the log, as Dream); the best first, or drawn without replacement from
  softmax(confidence / alg_temp) when alg_temp > 0;
- top-p keeps a token while the mass before it is <= p (the `dlm` baseline: < p), filtered
  logits get the dtype's minimum rather than -inf, top-k keeps ties with the k-th logit.
As everywhere in codila, an EOS committed in a completion ends the text at once (Dream decodes
on after it and cuts the text there at the end), so a completion may take fewer steps.
"""

from __future__ import annotations

import torch

from codila_engine.decoding.canvas import Canvas
from codila_engine.decoding.clock import Clock
from codila_engine.config import DecodeConfig
from codila_engine.models.dlm import Marginals
from codila_engine.decoding.events import Commit


def dream_filter(logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> torch.Tensor:
    """The logits Dream samples from: divided by temperature (if > 0), then top-p, then top-k."""
    if temperature > 0:
        logits = logits / temperature
    lowest = torch.finfo(logits.dtype).min
    if top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = torch.zeros_like(cumulative, dtype=torch.bool)
        drop[..., 1:] = cumulative[..., :-1] > top_p  # the mass before the token exceeds p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), lowest)
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1:]
        logits = logits.masked_fill(logits < kth, lowest)
    return logits


def dream_sample(
    logits: torch.Tensor, temperature: float, top_p: float, top_k: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, ids) per row: Dream's negative entropy of the filtered distribution, and a
    draw from it (its argmax at temperature 0)."""
    probs = torch.softmax(dream_filter(logits.float(), temperature, top_p, top_k), dim=-1)
    if temperature > 0:
        ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    else:
        ids = probs.argmax(-1)
    confidence = (probs * torch.log(probs + 1e-10)).sum(-1)
    return confidence, ids


def transfer_count(masked: int, step: int, steps: int, eps: float) -> int:
    """How many of `masked` tokens step `step` (0-based) of `steps` commits."""
    if step >= steps - 1:
        return masked
    t = torch.linspace(1, eps, steps + 1)
    return int(masked * (1 - t[step + 1] / t[step]))


def choose(confidence: torch.Tensor, n: int, alg_temp: float, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of the n positions to commit: the n most confident, or drawn by confidence."""
    if alg_temp > 0:
        return torch.multinomial(torch.softmax(confidence / alg_temp, dim=-1), n, generator=generator)
    return torch.topk(confidence, n).indices


class DreamSampler:
    """One Dream step per call (a DLM forward, then 0 or more tokens committed)."""

    def __init__(self, dlm: Marginals, canvas: Canvas, cfg: DecodeConfig, generator: torch.Generator | None) -> None:
        self.dlm, self.canvas, self.cfg, self.generator = dlm, canvas, cfg, generator
        self.steps = cfg.steps or canvas.span_length  # Dream's usual setting: one step per token
        self.step = 0

    def __call__(self, clock: Clock) -> Commit:
        canvas, cfg = self.canvas, self.cfg
        masked = torch.tensor(canvas.masked_offsets(), device=canvas.ids.device)
        with clock.phase("dlm"):
            logits = self.dlm.marginal_logits(canvas.ids, canvas.start + masked)
        with clock.phase("select"):
            confidence, ids = dream_sample(logits, cfg.temperature, cfg.top_p, cfg.top_k, self.generator)
            n = transfer_count(len(masked), self.step, self.steps, cfg.eps)
            picked = choose(confidence, n, cfg.alg_temp, self.generator).sort().values if n else masked[:0]
        self.step += 1
        return Commit(masked[picked].tolist(), ids[picked].tolist(), "dlm")
