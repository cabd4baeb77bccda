"""One replica's engine: the models loaded once, decodes run on threads and streamed as messages.

`ReplicaEngine.decode` is an async generator of wire messages (start, event per commit, result;
or error). Closing or cancelling it sets the decode's cancel flag, which the decode loop reads
once per iteration: the decode stops within one iteration. However a decode ends, a record of it
(iterations, the iteration at which the cancel arrived, stats) goes to `report`. Nothing here
needs Ray: app.py wraps it in a deployment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, cast

from codila_engine.serve import wire
from codila_engine.serve.batching import BatchedAR, BatchedDLM

if TYPE_CHECKING:
    from codila_engine.config import DecodeConfig
    from codila_engine.models.ar import LocalAR
    from codila_engine.models.dlm import DreamDLM

log = logging.getLogger("ray.serve.codila")


@dataclass(frozen=True)
class EngineSpec:
    """What each replica loads and how it runs decodes."""

    dlm: str | None
    ar: str | None
    name: str  # the models as outputs name them
    device: str | None = None  # None: cuda when the replica has a GPU, else cpu
    dtype: str | None = None  # None or auto: chosen per device (CODILA_DTYPE if set)
    think_ids: tuple[int, int] | None = None
    batching: bool = True  # concurrent decodes share DLM forwards and AR block decodes (batching.py)
    ar_batching: bool = True  # with batching: False shares DLM forwards only (to measure what AR batching adds)
    max_batch: int = 32  # canvases per batched forward, decodes per batched block decode
    batch_wait_s: float = 0.005  # how long a forward (a block decode) waits for the other decodes' own
    max_decodes: int = 16  # decodes running at once on this replica (threads)
    torch_threads: int | None = None  # intra-op threads per replica (None: torch's choice)


class ReplicaEngine:
    def __init__(self, spec: EngineSpec, replica: str = "local") -> None:
        import torch

        from codila_engine.engine import Engine

        if spec.torch_threads:
            torch.set_num_threads(spec.torch_threads)
        self.spec, self.replica, self.pid = spec, replica, os.getpid()
        t0 = time.perf_counter()
        self.engine = Engine.load(spec.dlm, spec.ar, device=spec.device, dtype=spec.dtype, think_ids=spec.think_ids)
        self.load_s = time.perf_counter() - t0
        self.batched = None
        if spec.batching and self.engine.dlm is not None:
            self.batched = BatchedDLM(self.engine.dlm, spec.max_batch, spec.batch_wait_s)
            self.engine.dlm = cast("DreamDLM", self.batched)  # every sampler's DLM calls go through it
        # The codila step's plain AR: its block decodes batch the same way. The fast path (a static
        # decoder built from the AR per setting, fixed to `scope` rows, one KV cache each, run under
        # self.fast) reads through the wrapper and is not batched; nor is a separate block decoder
        # (the vLLM backend, which batches its own requests).
        self.batched_ar: BatchedAR | None = None
        if spec.batching and spec.ar_batching and self.engine.dlm is not None and self.engine.ar is not None:
            if self.engine.block_decoder is None:
                self.batched_ar = BatchedAR(self.engine.ar, spec.max_batch, spec.batch_wait_s)
                self.engine.ar = cast("LocalAR", self.batched_ar)
        self.pool = ThreadPoolExecutor(spec.max_decodes, thread_name_prefix="codila-replica")
        self.fast = threading.Lock()  # the fast path's static decoders hold one KV cache each
        self.reporting: set[asyncio.Future] = set()  # records of cancelled decodes, until sent
        self.counts = threading.Lock()
        self.running = 0
        self.decodes = 0
        log.info(
            "replica %s (pid %d) loaded %s in %.1fs: %s on %s, batching %s",
            replica,
            self.pid,
            spec.name,
            self.load_s,
            self.engine.runs_on["dtype"],
            self.engine.runs_on["device"],
            ("on" if self.batched_ar else "on (DLM forwards only)") if self.batched else "off",
        )

    def info(self) -> dict:
        return {
            "model": self.spec.name,
            "decoders": list(self.engine.decoders()),
            **self.engine.runs_on,
            "batching": self.batched is not None,
            "max_decodes": self.spec.max_decodes,
            "replica": self.replica,
            "pid": self.pid,
            "running": self.running,
            "decodes": self.decodes,
            "batched_forwards": self.batched.forwards if self.batched else 0,
            "batched_canvases": self.batched.canvases if self.batched else 0,
            "batched_ar_calls": self.batched_ar.calls if self.batched_ar else 0,  # block decodes run
            "batched_ar_asks": self.batched_ar.asks if self.batched_ar else 0,  # decodes' block decodes answered
        }

    def ar_batched(self, cfg: DecodeConfig) -> bool:
        """Whether a decode's block decodes go through the AR batcher (so it counts as one of the
        decodes the others' block decodes wait for): a plain codila decode at a batchable temperature."""
        if self.batched_ar is None or cfg.fast or not self.batched_ar.batchable(cfg.temperature):
            return False
        try:
            return self.engine.decoder_for(cfg.decoder) == "codila"
        except ValueError:  # a decoder these models cannot run: the decode says so
            return False

    def tokenize(self, text: str) -> list[int]:
        return self.engine.encode(text)

    async def decode(
        self, message: dict, uid: str, client: str, report: Callable[[dict], Awaitable[None]] | None = None
    ) -> AsyncIterator[dict]:
        """Run one decode (`message`: a decode request as wire.py reads it); yields its messages.
        `report` gets the decode's record once it has ended: before its last message when it ran
        to its end (so a client that reads the result finds the record), after it when cancelled."""
        request = wire.parse_decode(message)  # checked by the gateway; again here, where it runs
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict] = asyncio.Queue()
        cancel = threading.Event()
        state: dict = {"decoding": None}
        cancelled_at: list[float] = []
        record: dict[str, Any] = {
            "uid": uid,
            "id": request.id,
            "client": client,
            "replica": self.replica,
            "pid": self.pid,
            "status": "queued",
            "cancel_at": None,  # iterations done when the cancel arrived
            "cancel_s": None,  # from the cancel's arrival to the decode's end, seconds
            "iterations": 0,
            "stats": None,
            "result": None,
            "error": None,
        }

        def post(item: dict) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def job() -> None:
            with self.counts:
                self.running += 1
                self.decodes += 1
            cfg = request.config
            shared = self.batched.decoding() if self.batched is not None else nullcontext()
            ar_batched = self.batched_ar is not None and self.ar_batched(cfg)
            shared_ar = self.batched_ar.decoding() if self.batched_ar is not None and ar_batched else nullcontext()
            try:
                with self.fast if cfg.fast else nullcontext(), shared, shared_ar:
                    try:
                        decoding = self.engine.decode(request.prefix, request.suffix, cfg, cancel=cancel)
                    except ValueError as exc:  # the request's fault, found before any decoding
                        record.update(status="rejected", error=str(exc))
                        post({"type": "error", "status": 400, "message": str(exc)})
                        return
                    state["decoding"] = decoding
                    record["status"] = "running"
                    post(
                        {
                            "type": "start",
                            "id": request.id,
                            "replica": self.replica,
                            "pid": self.pid,
                            "decoder": decoding.decoder,
                            "model": self.spec.name,
                        }
                    )
                    for event in decoding:
                        post(wire.event_message(event))
                    result = decoding.result
                    assert result is not None  # the iteration ended
                    message = wire.result_message(result, request.id)
                    record.update(
                        status="cancelled" if result.cancelled else "done",
                        iterations=result.stats.iterations,
                        stats=asdict(result.stats),
                        result=message if result.cancelled else None,  # the gateway answers a cancel with it
                        shared_forwards=self.batched.shared if self.batched is not None else 0,
                        shared_ar_calls=self.batched_ar.shared if self.batched_ar is not None and ar_batched else 0,
                    )
                    post(message)
            except Exception as exc:  # a bug or the device failing: this request fails, the replica serves on
                log.exception("decode %s failed on replica %s", uid, self.replica)
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                post({"type": "error", "status": 500, "message": f"the decode failed on the engine: {exc}"})
            finally:
                with self.counts:
                    self.running -= 1
                if cancelled_at:
                    record["cancel_s"] = round(time.perf_counter() - cancelled_at[0], 4)

        async def ended() -> None:
            await asyncio.shield(running)
            if report is not None:
                await report(record)

        running = loop.run_in_executor(self.pool, job)
        try:
            while True:
                item = await queue.get()
                if item["type"] in ("result", "error"):
                    await ended()
                    yield item
                    return
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            task = asyncio.ensure_future(ended())  # records the decode once it has stopped
            self.reporting.add(task)
            task.add_done_callback(self.reporting.discard)
            decoding = state["decoding"]
            record["cancel_at"] = decoding.stats.iterations if decoding is not None else 0
            cancelled_at.append(time.perf_counter())
            cancel.set()  # the decode stops after the iteration it is in
            log.info("decode %s (%s) cancelled after %d iterations", uid, client, record["cancel_at"])
            raise
