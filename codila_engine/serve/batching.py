"""Concurrent decodes on one replica share their DLM forwards: a batch over canvases.

Every sampler asks its DLM for `marginal_logits(ids, positions)`, once per iteration. A
BatchedDLM stands in for the engine's DLM: each decode thread's call waits until every decode
running on the replica has asked (or `wait_s` has passed since the first one did), and then one
padded forward over all waiting canvases answers them all. A decode alone never waits, and a
batch of one runs the exact single-canvas forward. Canvases of different lengths are padded on
the right and the padding is masked out of the bidirectional attention, so each canvas's
marginals are its own (equal to the unbatched ones up to float rounding). The dual cache runs
its own partial forwards and is not batched.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import torch

from codila_engine.models.dlm import DreamDLM, shifted_positions


class _Ask:
    """One decode's forward request, answered by whichever thread runs its batch."""

    __slots__ = ("ids", "positions", "taken", "done", "logits", "error", "batch")

    def __init__(self, ids: torch.Tensor, positions: torch.Tensor) -> None:
        self.ids, self.positions = ids, positions
        self.taken = False
        self.done = threading.Event()
        self.logits: torch.Tensor | None = None
        self.error: BaseException | None = None
        self.batch = 0


class BatchedDLM:
    """A DreamDLM whose `marginal_logits` batches across threads; everything else is the DLM's."""

    def __init__(self, dlm: DreamDLM, max_batch: int = 32, wait_s: float = 0.005) -> None:
        if max_batch < 1 or wait_s < 0:
            raise ValueError("a batch needs max_batch >= 1 and wait_s >= 0")
        self.dlm, self.max_batch, self.wait_s = dlm, max_batch, wait_s
        self._cond = threading.Condition()
        self._waiting: list[_Ask] = []
        self._active = 0
        self._local = threading.local()  # per decode thread: forwards it shared with others
        self.forwards = 0  # batched forwards run
        self.canvases = 0  # canvases they covered

    def __getattr__(self, name: str):  # model, tokenizer, mask_id, head, ...: the DLM's own
        if name == "dlm":  # not set yet (a copy under construction)
            raise AttributeError(name)
        return getattr(self.dlm, name)

    @contextmanager
    def decoding(self):
        """Around one decode: while it runs, the others wait for its forwards to batch with."""
        with self._cond:
            self._active += 1
        self._local.shared = 0
        try:
            yield self
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()  # a batch waiting for this decode can go now

    @property
    def shared(self) -> int:
        """Forwards of the current thread's decode that ran in a batch with another canvas."""
        return getattr(self._local, "shared", 0)

    def marginal_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        ask = _Ask(ids, positions)
        batch = None
        with self._cond:
            self._waiting.append(ask)
            self._cond.notify_all()  # a waiting thread may now have a full batch
            deadline = time.monotonic() + self.wait_s
            while not ask.taken:
                full = len(self._waiting) >= min(max(self._active, 1), self.max_batch)
                left = deadline - time.monotonic()
                if full or left <= 0:
                    batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                    for each in batch:
                        each.taken = True
                    break
                self._cond.wait(left)
        if batch is not None:
            self._run(batch)
        ask.done.wait()
        if ask.error is not None:
            raise ask.error
        if ask.batch > 1:
            self._local.shared = self.shared + 1
        assert ask.logits is not None  # answered: logits or an error
        return ask.logits

    def _run(self, batch: list[_Ask]) -> None:
        try:
            outputs = self.forward(batch)
            for ask, logits in zip(batch, outputs):
                ask.logits, ask.batch = logits, len(batch)
        except BaseException as exc:  # every waiting decode fails with it, none hangs
            for ask in batch:
                ask.error = exc
            raise
        finally:
            with self._cond:
                self.forwards += 1
                self.canvases += len(batch)
            for ask in batch:
                ask.done.set()

    @torch.inference_mode()
    def forward(self, batch: list[_Ask]) -> list[torch.Tensor]:
        """Marginal logits for each canvas of the batch: one forward, one lm_head."""
        dlm = self.dlm
        if len(batch) == 1:
            (ask,) = batch
            return [dlm.marginal_logits(ask.ids, ask.positions)]
        lengths = [ask.ids.shape[0] for ask in batch]
        longest, device = max(lengths), batch[0].ids.device
        pad = dlm.pad_id if dlm.pad_id is not None else dlm.eos_id
        ids = torch.full((len(batch), longest), pad, dtype=batch[0].ids.dtype, device=device)
        mask = torch.zeros((len(batch), longest), dtype=torch.long, device=device)
        for row, ask in enumerate(batch):
            ids[row, : lengths[row]] = ask.ids
            mask[row, : lengths[row]] = 1
        padded = any(n != longest for n in lengths)
        hidden = dlm.model.model(input_ids=ids, attention_mask=mask if padded else None).last_hidden_state
        rows = [hidden[row][shifted_positions(ask.positions)] for row, ask in enumerate(batch)]
        logits = dlm.head(torch.cat(rows))
        return list(logits.split([len(ask.positions) for ask in batch]))
