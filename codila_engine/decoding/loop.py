"""The decode loop: run a sampler step until the span is full, one Event per commit.

Samplers decide; the loop applies the decision to the canvas, keeps time, checks the cancel
flag once per iteration and builds the final Result. Iterating a Decoding is the stream; after
it ends, `.result` holds the outcome (also after a cancel, with what was committed).
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, Protocol

from codila_engine.decoding.canvas import Canvas, Decode
from codila_engine.decoding.clock import Clock
from codila_engine.decoding.events import Commit, Event, Result, Stats
from codila_engine.decoding.fim import committable


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


class Decoding:
    def __init__(
        self,
        step: Callable[[Clock], Commit],
        canvas: Canvas,
        decode: Decode,
        placeholder: str,
        cancel: CancelFlag | None = None,
        profile: bool = True,
        decoder: str = "",
        line_end: Callable[[str], int | None] | None = None,
    ) -> None:
        self.step = step
        self.canvas = canvas
        self.decode = decode
        self.placeholder = placeholder
        self.cancel = cancel
        self.decoder = decoder
        self.line_end = line_end  # single-line requests: where the final text's first line ends; see line_done
        self.clock = Clock(canvas.ids.device, profile)
        self.stats = Stats()
        self.result: Result | None = None

    def __iter__(self) -> Iterator[Event]:
        """The events; iterate once. However it ends (done, cancelled, Ctrl-C inside a step, or
        the consumer closing it), `.result` then holds what was committed and the real timings."""
        if self.result is not None or self.stats.iterations:
            raise RuntimeError("a Decoding runs once; start another for a new decode")
        t0 = time.perf_counter()
        canvas, stats = self.canvas, self.stats
        cancelled = False
        try:
            while not (canvas.done or self.line_done()):
                if self.cancel is not None and self.cancel.is_set():
                    cancelled = True
                    break
                commit = self.step(self.clock)
                canvas.commit(commit.offsets, commit.ids, commit.end)
                stats.iterations += 1
                stats.tokens += len(commit.offsets)
                now = time.perf_counter() - t0
                if stats.first_commit_s is None:
                    stats.first_commit_s = now
                yield Event(
                    iteration=stats.iterations,
                    positions=tuple(commit.offsets),
                    ids=tuple(commit.ids),
                    text=self.decode(list(commit.ids)),
                    draft=canvas.draft(self.decode, self.placeholder),
                    masks=canvas.masked_runs(),
                    source=commit.source,
                    elapsed_s=now,
                )
        except (KeyboardInterrupt, GeneratorExit):
            cancelled = True
            raise
        finally:
            self._finish(time.perf_counter() - t0, cancelled)

    def line_done(self) -> bool:
        """A single-line request is over once its first line is committed from the span's start
        through the line break: nothing decoded after that can change the kept text, so the rest
        of the span is not decoded."""
        if self.line_end is None:
            return False
        runs = self.canvas.runs()
        lead = runs[0][1] if runs and not runs[0][0] else []
        return "\n" in self.decode(lead)

    def _finish(self, wall_s: float, cancelled: bool) -> None:
        canvas, stats = self.canvas, self.stats
        stats.wall_s = wall_s
        text, ids = canvas.text(self.decode), [t for t in canvas.visible() if t is not None]
        cut = self.line_end(text) if self.line_end is not None else None
        if cut is not None and cut < len(text):  # the rest of the span was decoded, but is not kept
            text, ids = text[:cut], ids[: committable(ids, self.decode, cut)]
        stats.text_tokens = len(ids)
        for phase, seconds in self.clock.totals.items():
            setattr(stats, f"{phase}_s", seconds)
        self.result = Result(text=text, ids=canvas.span_ids(), stats=stats, cancelled=cancelled, decoder=self.decoder)

    def run(self) -> Result:
        """Decode to the end without looking at the events."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result
