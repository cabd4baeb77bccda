"""Concurrent decodes on one replica share their DLM forwards (a batch over canvases) and AR block decodes.

Every sampler asks its DLM for `marginal_logits(ids, positions)`, once per iteration. A
BatchedDLM stands in for the engine's DLM: each decode thread's call waits until every decode
running on the replica has asked (or `wait_s` has passed since the first one did), and then one
padded forward over all waiting canvases answers them all. A decode alone never waits, and a
batch of one runs the exact single-canvas forward. Canvases of different lengths are padded on
the right and the padding is masked out of the bidirectional attention, so each canvas's
marginals are its own (equal to the unbatched ones up to float rounding). The dual cache runs
its own partial forwards and is not batched.

A BatchedAR does the same for the CoDiLA step's local AR: the candidate blocks of the decodes
that ask together (`inputs [C_i, B+2, H]`, `forced [C_i, B]`) go through one `decode_blocks`
call over all their rows, and each decode gets its own rows' drafts back. Only compatible asks
share a call (the same block size, embedding width, dtype and device, the same `allowed` mask,
temperature and top-p); the others run in batches of their own. A call waits (up to `wait_s`)
only for the decodes that may still ask, not for one whose own block decode is running. Blocks
have one length, so nothing is padded: rows are independent and each draft is the unbatched one
up to float rounding.
Sampling keeps every decode's own generator: a greedy batch (temperature 0) is one plain
`decode_blocks` call (no generator is drawn from); a sampled batch, possible only when the
wrapped decoder is a LocalAR, runs LocalAR.decode_rows over the merged rows, drawing each decode's
rows from that decode's generator, in the same order and amounts as its unbatched call, so a
seeded decode draws the same random numbers whoever shares its batch (its probabilities equal
the unbatched ones to float rounding, as for batched DLM marginals). Any other decoder's sampled
calls run alone. The static fast path and the vLLM backend are never wrapped (see replica.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from codila_engine.models.ar import BlockDecoder, BlockDrafts, LocalAR
from codila_engine.models.dlm import DreamDLM, shifted_positions


class _Answered:
    """One decode's request, answered by whichever thread runs its batch."""

    __slots__ = ("taken", "done", "result", "error", "batch")

    def __init__(self) -> None:
        self.taken = False
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.batch = 0  # requests in the batch that answered it

    def wait(self, local: threading.local) -> Any:
        """The answer (or its batch's error, raised here); counts a shared batch in `local`."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        if self.batch > 1:
            local.shared = getattr(local, "shared", 0) + 1
        return self.result


def answer(batch: Sequence[_Answered], forward: Callable, count: Callable) -> None:
    """Answer every request of `batch` from one `forward(batch)`; on failure each gets the error,
    so none hangs. `count(batch)` runs before the answers are released."""
    try:
        for ask, result in zip(batch, forward(batch)):
            ask.result, ask.batch = result, len(batch)
    except BaseException as exc:
        for ask in batch:
            ask.error = exc
        raise
    finally:
        count(batch)
        for ask in batch:
            ask.done.set()


class _Ask(_Answered):
    """One decode's DLM forward: its canvas and the positions whose marginals it wants."""

    __slots__ = ("ids", "positions")

    def __init__(self, ids: torch.Tensor, positions: torch.Tensor) -> None:
        super().__init__()
        self.ids, self.positions = ids, positions


class _Batcher:
    """What both batchers share: the queue, the lock, and the decodes running (`decoding()`),
    whose requests a batch waits for."""

    def __init__(self, max_batch: int, wait_s: float) -> None:
        if max_batch < 1 or wait_s < 0:
            raise ValueError("a batch needs max_batch >= 1 and wait_s >= 0")
        self.max_batch, self.wait_s = max_batch, wait_s
        self._cond = threading.Condition()
        self._waiting: list = []
        self._active = 0  # decodes inside decoding()
        self._local = threading.local()  # per decode thread: its requests that shared a batch

    @contextmanager
    def decoding(self):
        """Around one decode whose requests go through this batcher: while it runs, the others'
        requests wait for its own to batch with. A decode that never asks (another decoder, the
        fast path) must not enter it: the others would wait `wait_s` for it."""
        with self._cond:
            self._active += 1
        self._local.shared, self._local.inside = 0, True
        try:
            yield self
        finally:
            self._local.inside = False
            with self._cond:
                self._active -= 1
                self._cond.notify_all()  # a batch waiting for this decode can go now

    @property
    def shared(self) -> int:
        """Requests of the current thread's decode that ran in a batch with another decode's."""
        return getattr(self._local, "shared", 0)


class BatchedDLM(_Batcher):
    """A DreamDLM whose `marginal_logits` batches across threads; everything else is the DLM's."""

    def __init__(self, dlm: DreamDLM, max_batch: int = 32, wait_s: float = 0.005) -> None:
        super().__init__(max_batch, wait_s)
        self.dlm = dlm
        self.forwards = 0  # batched forwards run
        self.canvases = 0  # canvases they covered

    def __getattr__(self, name: str):  # model, tokenizer, mask_id, head, ...: the DLM's own
        if name == "dlm":  # not set yet (a copy under construction)
            raise AttributeError(name)
        return getattr(self.dlm, name)

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
            answer(batch, self.forward, self._count)
        return ask.wait(self._local)

    def _count(self, batch: list[_Ask]) -> None:
        with self._cond:
            self.forwards += 1
            self.canvases += len(batch)

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


class _BlocksAsk(_Answered):
    """One decode's `decode_blocks` call."""

    __slots__ = ("inputs", "forced", "allowed", "temperature", "top_p", "generator", "lead", "counted")

    def __init__(
        self,
        inputs: torch.Tensor,
        forced: torch.Tensor,
        allowed: torch.Tensor | None,
        temperature: float,
        top_p: float,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__()
        self.inputs, self.forced, self.allowed = inputs, forced, allowed
        self.temperature, self.top_p, self.generator = temperature, top_p, generator
        self.lead: list[_BlocksAsk] | None = None  # the batch this ask's thread runs, if it leads one
        self.counted = False  # asked by a decode inside decoding(): busy while its batch runs

    def fits(self, other: "_BlocksAsk") -> bool:
        """Whether the two calls can be one `decode_blocks` call: the same shapes, mask and sampling."""
        a, b = self, other
        if (a.temperature, a.top_p) != (b.temperature, b.top_p) or a.forced.shape[1] != b.forced.shape[1]:
            return False
        if a.inputs.shape[1:] != b.inputs.shape[1:] or a.inputs.dtype != b.inputs.dtype:
            return False
        if a.inputs.device != b.inputs.device or a.forced.dtype != b.forced.dtype:
            return False
        if a.allowed is b.allowed:
            return True
        if a.allowed is None or b.allowed is None:
            return False
        return a.allowed.shape == b.allowed.shape and bool(torch.equal(a.allowed, b.allowed))


class BatchedAR(_Batcher):
    """A BlockDecoder whose `decode_blocks` batches across threads; everything else is the AR's.

    It wraps the replica's plain LocalAR (the engine's `ar`): what reads the AR's model, tokenizer
    or embedding (the fim decoder, the static fast path built from it) reads through to it, so
    only the plain CoDiLA block decode is batched. Greedy calls of any decoder are batched;
    sampled ones only for a LocalAR (each decode's rows drawn from its own generator)."""

    def __init__(self, ar: BlockDecoder, max_batch: int = 32, wait_s: float = 0.005) -> None:
        super().__init__(max_batch, wait_s)
        self.ar = ar
        self._busy = 0  # decodes inside decoding() whose block decode runs: they will not ask again soon
        self.calls = 0  # decode_blocks calls run
        self.asks = 0  # the decodes' calls they answered (asks - calls were saved)
        self.blocks = 0  # candidate blocks they decoded

    def __getattr__(self, name: str):  # model, tokenizer, eos_id, max_positions, ...: the AR's own
        if name == "ar":  # not set yet (a copy under construction)
            raise AttributeError(name)
        return getattr(self.ar, name)

    @property
    def embedding(self) -> torch.Tensor:
        return self.ar.embedding

    def batchable(self, temperature: float) -> bool:
        """Whether calls at this temperature can share a batch (greedy always; sampled on a LocalAR)."""
        return temperature <= 0 or isinstance(self.ar, LocalAR)

    def decode_blocks(
        self,
        inputs: torch.Tensor,
        forced: torch.Tensor,
        *,
        allowed: torch.Tensor | None = None,
        temperature: float,
        top_p: float,
        generator: torch.Generator | None = None,
    ) -> BlockDrafts:
        if not self.batchable(temperature):  # one generator per call: it runs alone
            return self.ar.decode_blocks(
                inputs, forced, allowed=allowed, temperature=temperature, top_p=top_p, generator=generator
            )
        ask = _BlocksAsk(inputs, forced, allowed, temperature, top_p, generator)
        ask.counted = getattr(self._local, "inside", False)
        with self._cond:
            self._waiting.append(ask)
            self._cond.notify_all()  # a waiting thread may now have a full batch
            deadline = time.monotonic() + self.wait_s
            while not ask.taken:
                left = deadline - time.monotonic()
                # every decode that may still ask this round has asked: the others are running theirs
                if len(self._waiting) >= min(max(self._active - self._busy, 1), self.max_batch):
                    self._take(ask, self._waiting)  # no other call will come: every group goes
                    break
                if left <= 0:
                    self._take(ask, [each for each in self._waiting if ask.fits(each)])  # its own group
                    break
                self._cond.wait(left)
            lead = ask.lead
        if lead is not None:
            answer(lead, self.forward, self._count)
        return ask.wait(self._local)

    def _take(self, mine: _BlocksAsk, asks: list[_BlocksAsk]) -> None:
        """Under the lock: take `asks` off the queue as batches of compatible calls (in arrival
        order, up to max_batch each); this thread leads the batch holding `mine`, the first ask's
        thread each other (woken here)."""
        groups: list[list[_BlocksAsk]] = []
        for ask in asks:
            group = next((g for g in groups if g[0].fits(ask) and len(g) < self.max_batch), None)
            if group is None:
                groups.append([ask])
            else:
                group.append(ask)
        for group in groups:
            for ask in group:
                ask.taken = True
                self._busy += ask.counted
            leader = mine if any(ask is mine for ask in group) else group[0]
            leader.lead = group
        self._waiting = [ask for ask in self._waiting if not ask.taken]
        self._cond.notify_all()

    def _count(self, batch: list[_BlocksAsk]) -> None:
        with self._cond:
            self._busy -= sum(ask.counted for ask in batch)
            self.calls += 1
            self.asks += len(batch)
            self.blocks += sum(ask.forced.shape[0] for ask in batch)

    def forward(self, batch: list[_BlocksAsk]) -> list[BlockDrafts]:
        """Each ask's drafts, from one block decode over all their rows (compatible asks only)."""
        first = batch[0]
        if len(batch) == 1:  # the exact unbatched call
            return [
                self.ar.decode_blocks(
                    first.inputs,
                    first.forced,
                    allowed=first.allowed,
                    temperature=first.temperature,
                    top_p=first.top_p,
                    generator=first.generator,
                )
            ]
        sizes = [ask.forced.shape[0] for ask in batch]
        inputs = torch.cat([ask.inputs for ask in batch])
        forced = torch.cat([ask.forced for ask in batch])
        if first.temperature <= 0:  # greedy: no generator is drawn from
            drafts = self.ar.decode_blocks(
                inputs, forced, allowed=first.allowed, temperature=first.temperature, top_p=first.top_p, generator=None
            )
        else:
            assert isinstance(self.ar, LocalAR)  # batchable() lets sampled calls through only then
            generators = [ask.generator for ask in batch]
            drafts = self.ar.decode_rows(
                inputs, forced, sizes, generators, first.allowed, first.temperature, first.top_p
            )
        return [BlockDrafts(ids, ent) for ids, ent in zip(drafts.ids.split(sizes), drafts.entropy.split(sizes))]
