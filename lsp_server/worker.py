"""The decode worker: one thread owns the engine, so one decode runs on the device at a time.

The event loop never waits on the model: it hands a job to the worker and awaits a future,
while the worker posts each commit back to the loop. Cancelling sets the engine's cancel flag,
which the decode checks once per iteration.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

from codila_engine.config import DecodeConfig
from codila_engine.decoding.events import Event, Result
from codila_engine.serve.client import EngineUnavailable, RemoteEngine, RemoteModels

if TYPE_CHECKING:  # both are imported on the worker thread, when the models load
    from codila_engine.engine import Engine
    from codila_engine.prepare.folders import Models

log = logging.getLogger(__name__)


class ModelsUnavailable(RuntimeError):
    """No model folders are configured and none ship with the package, or loading failed."""


class Unservable(ValueError):
    """The loaded models cannot run this decode (a span beyond their positions, a decoder they
    lack): the request's or the settings' fault, found before any decoding."""


class DecodeWorker:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codila-decode")
        self._engine: Engine | RemoteEngine | None = None
        self._key: tuple | None = None
        self.models: Models | RemoteModels | None = None  # those of the loaded engine

    def _engine_for(
        self,
        dlm: str | None,
        ar: str | None,
        device: str | None,
        dtype: str | None = None,
        cache_dir: str | None = None,
        decoder: str | None = None,
        engine_url: str | None = None,
        engine_token_file: str | None = None,
        ar_backend: str = "torch",
    ) -> Engine | RemoteEngine:
        """Load (or reuse) the engine; runs on the worker thread only. With an engine URL (a team
        server, `codila serve`) the engine is that server's, and the model settings are its own; its
        token comes from `engine_token_file`, else $CODILA_TOKEN_FILE or $CODILA_TOKEN."""
        if engine_url:  # a thin client: torch and the models are never imported here
            return self._remote(engine_url, engine_token_file)

        from codila_engine.prepare.folders import model_folders
        from codila_engine.engine import Engine

        key = (dlm, ar, device, dtype, cache_dir, decoder, ar_backend)
        if self._engine is not None and self._key == key:
            return self._engine
        self._drop()
        try:
            models = model_folders(
                dlm, ar, decoder, flags=("the `dlm` setting", "the `ar` setting"), cache_dir=cache_dir, progress=False
            )  # no progress bars in the client's log; one line each step
            engine = Engine.load(models.dlm, models.ar, device=device or None, dtype=dtype, ar_backend=ar_backend)
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: torch's, for an unknown device
            raise ModelsUnavailable(f"could not load the models: {exc}") from exc
        log.info("loaded %s (%s on %s)", models.name, engine.runs_on["dtype"], engine.runs_on["device"])
        self._engine, self._key, self.models = engine, key, models
        return engine

    def _remote(self, url: str, token_file: str | None) -> RemoteEngine:
        key = ("remote", url, token_file)
        if isinstance(self._engine, RemoteEngine) and self._key == key:
            return self._engine
        self._drop()
        try:
            engine = RemoteEngine.connect(url, token_file=token_file)
        except (EngineUnavailable, ValueError, OSError) as exc:  # ValueError: a bad URL or no token
            raise ModelsUnavailable(f"could not use the codila engine at {url}: {exc}") from exc
        log.info("using the codila engine at %s: %s", url, engine.name)
        self._engine, self._key, self.models = engine, key, engine.models
        return engine

    def runs_on(self) -> dict[str, str]:
        """Where the loaded engine's models run ({"device": ..., "dtype": ...}; {} before one loads)."""
        engine = self._engine
        return engine.runs_on if engine is not None else {}

    def _drop(self) -> None:
        """Close the engine being replaced: a vLLM engine's process ends with it, a remote one's
        pooled connections close."""
        if self._engine is not None:
            self._engine.close()
        self._engine, self._key = None, None

    async def load(self, *key) -> Models | RemoteModels:
        """Load the engine for `key` (the settings' model_key); returns its models."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._engine_for, *key)
        assert self.models is not None  # the engine loaded, or _engine_for raised
        return self.models

    async def count_tokens(self, key: tuple, text: str) -> int:
        def job() -> int:
            try:
                return len(self._engine_for(*key).encode(text))
            except EngineUnavailable as exc:
                raise ModelsUnavailable(str(exc)) from None

        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    async def decode(
        self,
        key: tuple,
        prefix: str,
        suffix: str,
        cfg: DecodeConfig,
        cancel: threading.Event,
        on_event: Callable[[Event], None],
        on_done: Callable[[Result], None],
    ) -> Result:
        """Run one decode on the worker; `on_event` is called on the event loop per commit and
        `on_done` once the decode has ended, even if the caller stopped waiting for it."""
        loop = asyncio.get_running_loop()

        def job() -> Result:
            engine = self._engine_for(*key)
            try:
                decoding = engine.decode(prefix, suffix, cfg, cancel=cancel)
            except ValueError as exc:
                raise Unservable(str(exc)) from None
            except EngineUnavailable as exc:
                raise ModelsUnavailable(str(exc)) from None
            try:
                for event in decoding:
                    loop.call_soon_threadsafe(on_event, event)
            except EngineUnavailable as exc:  # the team server lost the decode (its replica died twice)
                raise ModelsUnavailable(str(exc)) from None
            result = decoding.result
            assert result is not None  # the iteration ended, so the decode has its result
            loop.call_soon_threadsafe(on_done, result)
            return result

        future = loop.run_in_executor(self._pool, job)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.set()  # the decode stops after its current iteration
            raise

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
