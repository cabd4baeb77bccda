"""Plain DLM decoding, the baseline CoDiLA is measured against (Dream's alg="entropy").

Each iteration samples every masked token independently from its marginal and commits the K
with the lowest entropy. K = 1 is the sequential reference; K = B matches CoDiLA's parallelism.
"""

from __future__ import annotations

import torch

from codila_engine.decoding.canvas import Canvas
from codila_engine.decoding.clock import Clock
from codila_engine.config import DecodeConfig
from codila_engine.models.dlm import Marginals
from codila_engine.decoding.events import Commit
from codila_engine.sampling import entropy, sample


def dlm_step(
    dlm: Marginals,
    canvas: Canvas,
    cfg: DecodeConfig,
    generator: torch.Generator | None,
    clock: Clock,
) -> Commit:
    masked = torch.tensor(canvas.masked_offsets(), device=canvas.ids.device)
    with clock.phase("dlm"):
        logits = dlm.marginal_logits(canvas.ids, canvas.start + masked)
    with clock.phase("select"):
        ids = sample(logits, cfg.temperature, cfg.top_p, generator)
        order = torch.argsort(entropy(logits), stable=True)[: cfg.k]
        order = order.sort().values
    return Commit(masked[order].tolist(), ids[order].tolist(), "dlm")
