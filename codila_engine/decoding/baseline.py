"""Plain DLM decoding, the baseline CoDiLA is measured against (Dream's alg="entropy").

Each iteration samples every masked token independently from its marginal and commits the K
with the lowest entropy. K = 1 is the sequential reference; K = B matches CoDiLA's parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codila_engine.decoding.canvas import Canvas
from codila_engine.decoding.clock import Clock
from codila_engine.config import DecodeConfig
from codila_engine.models.dlm import Marginals
from codila_engine.decoding.events import Commit
from codila_engine.sampling import entropy, sample


@dataclass
class DlmStep:
    """One plain DLM iteration per call: the decode loop's step for `--decoder dlm`."""

    dlm: Marginals
    canvas: Canvas
    cfg: DecodeConfig
    generator: torch.Generator | None = None

    def __call__(self, clock: Clock) -> Commit:
        canvas, cfg = self.canvas, self.cfg
        masked = torch.tensor(canvas.masked_offsets(), device=canvas.ids.device)
        with clock.phase("dlm"):
            marginal = self.dlm.marginal_logits(canvas.ids, canvas.start + masked)
        with clock.phase("select"):
            ids = sample(marginal, cfg.temperature, cfg.top_p, self.generator)
            order = torch.argsort(entropy(marginal), stable=True)[: cfg.k]
            order = order.sort().values
        return Commit(masked[order].tolist(), ids[order].tolist(), "dlm")
