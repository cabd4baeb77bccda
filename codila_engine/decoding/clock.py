"""Per-phase wall-clock accounting for one decode (DLM forward, conditioning, AR, selection)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch


class Clock:
    def __init__(self, device: torch.device, profile: bool = True) -> None:
        # GPU work is asynchronous: timing a phase means waiting for it, which costs a host
        # synchronisation per phase; without `profile` only the whole decode is timed.
        self.sync = profile and device.type == "cuda"
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                torch.cuda.synchronize()
            self.totals[name] += time.perf_counter() - t0
