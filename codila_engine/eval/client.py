"""A headless LSP client that drives `codila-lsp` the way an editor does, for evaluation.

It starts the server as a subprocess over stdio, sends the settings as initializationOptions,
waits for the models with one warm-up request (so the first task's latency is not load time),
then opens a document per task, asks `codila/infill` and times the reply and its drafts.
A request that errors or times out is a failed task; a server that exits or cannot be started
raises ServerError, since nothing after it could be measured.
"""

from __future__ import annotations

import asyncio
import itertools
import shlex
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

from lsp_server.protocol import DRAFT, INFILL, InfillParams, Position

DEFAULT_SERVER_CMD = (sys.executable, "-m", "lsp_server")  # what the `codila-lsp` script runs
_WARMUP_URI = "file:///codila-eval/warmup.py"


class ServerError(RuntimeError):
    """The server could not be started, rejected its settings, or exited: the eval cannot go on."""


@dataclass
class Reply:
    """One infill as the client saw it; `error` is set (and `text` None) when it failed."""

    text: str | None
    stats: dict | None
    latency_s: float | None  # request sent -> response received (None: the server died)
    first_draft_s: float | None  # request sent -> first streamed draft (a committed block)
    drafts: int = 0
    error: str | None = None


def server_command(cmd: str | Sequence[str] | None) -> list[str]:
    """The server's argv: the default codila-lsp, or a shell-like string split with shlex."""
    if cmd is None:
        return list(DEFAULT_SERVER_CMD)
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if not argv:
        raise ValueError("--server-cmd is empty; give the program that runs the language server")
    return argv


def _get(obj: Any, name: str) -> Any:
    """pygls hands custom notifications over as namedtuple-like objects or dicts."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class EvalClient:
    """`async with EvalClient(cmd, options) as client: reply = await client.infill(...)`."""

    def __init__(
        self,
        command: list[str],
        options: dict,
        *,
        request_timeout_s: float = 300.0,
        start_timeout_s: float = 60.0,
        load_timeout_s: float = 600.0,
    ) -> None:
        self.command, self.options = command, options
        self.request_timeout_s, self.start_timeout_s, self.load_timeout_s = (
            request_timeout_s,
            start_timeout_s,
            load_timeout_s,
        )
        self.client = LanguageClient("codila-eval", "0.1.0")
        self.drafts: dict[str, list[float]] = {}  # request id -> arrival times of its drafts
        self.messages: list[tuple[types.MessageType, str]] = []  # window/showMessage from the server
        self.stderr: deque[str] = deque(maxlen=20)
        self.ids = itertools.count(1)
        self._process: asyncio.subprocess.Process | None = None
        self._exited: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._answered = False  # the server answered initialize, so it may shut down politely

        @self.client.feature(DRAFT)
        def on_draft(params: Any) -> None:
            if not _get(params, "done"):
                self.drafts.setdefault(str(_get(params, "id")), []).append(time.perf_counter())

        @self.client.feature(types.WINDOW_SHOW_MESSAGE)
        def on_message(params: types.ShowMessageParams) -> None:
            self.messages.append((params.type, params.message))

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def on_log(params: types.LogMessageParams) -> None:
            """Handled so pygls does not warn about it; the server's logs are not measured."""

    async def __aenter__(self) -> "EvalClient":
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- lifecycle ----------------------------------------------------------------------
    @property
    def process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("the language server has not been started (use `async with EvalClient(...)`)")
        return self._process

    @property
    def exited(self) -> asyncio.Task:
        if self._exited is None:
            raise RuntimeError("the language server has not been started (use `async with EvalClient(...)`)")
        return self._exited

    async def start(self) -> None:
        """Start, initialize, and wait until the server has decoded once."""
        try:
            await self.client.start_io(*self.command)
        except OSError as exc:
            raise ServerError(f"could not start the language server {shlex.join(self.command)!r}: {exc}") from exc
        self._process = self.client._server  # pygls keeps the process there (pytest-lsp reads it too)
        self._exited = asyncio.create_task(self.process.wait())
        self._tasks.append(asyncio.create_task(self._drain_stderr()))
        params = types.InitializeParams(
            capabilities=types.ClientCapabilities(), process_id=None, initialization_options=self.options
        )
        try:
            await self._request(lambda: self.client.initialize(params), self.start_timeout_s, "initialize")
        except (TimeoutError, JsonRpcException) as exc:
            raise ServerError(f"the language server {shlex.join(self.command)!r} did not initialize: {exc}") from exc
        self._answered = True
        self.client.initialized(types.InitializedParams())
        # the first decode waits for the models, so this also surfaces loading errors
        warm = await self.infill(
            _WARMUP_URI, "x = 1\n", types.Position(line=1, character=0), 1, timeout_s=self.load_timeout_s
        )
        problems = [
            m.removeprefix("codila: ")
            for kind, m in self.messages
            if kind in (types.MessageType.Error, types.MessageType.Warning)
        ] + [warm.error or ""]
        problems = list(dict.fromkeys(p for p in problems if p))  # once each, in order
        problems = [p for p in problems if not any(q != p and q in p for q in problems)]  # no restatements
        if problems:
            raise ServerError("the language server is not usable with these settings: " + "; ".join(problems))

    async def close(self) -> None:
        """Shut the server down politely, then by force; never hangs."""
        if self._answered and self.process.returncode is None:
            try:
                await self._request(lambda: self.client.shutdown(None), 5.0, "shutdown")
                self.client.exit(None)
                await asyncio.wait_for(asyncio.shield(self.exited), 5.0)
            except (JsonRpcException, OSError, RuntimeError, TimeoutError):
                pass
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
        if self._exited is not None:
            await self._exited
            await self.client.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _drain_stderr(self) -> None:
        """Read the server's stderr so it never blocks on a full pipe; keep the tail for errors."""
        stderr = self.process.stderr
        assert stderr is not None, "started with stderr=PIPE"
        while line := await stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self.stderr.append(text.rsplit("\r", 1)[-1])  # a progress bar's last state

    def _died(self, during: str) -> ServerError:
        tail = "\n".join(self.stderr) or "(nothing on stderr)"
        code = self.process.returncode
        if code is None:
            return ServerError(f"the language server {shlex.join(self.command)!r} stopped answering during {during}")
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return ServerError(
            f"the language server {shlex.join(self.command)!r} {how} during {during}; its last stderr lines:\n{tail}"
        )

    async def _request(self, send: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """Send a request and wait for its answer, the server's exit, or the timeout.

        Raises JsonRpcException for an error reply, TimeoutError, or ServerError when the server
        is gone (pygls fails pending requests with RuntimeError when its process exits).
        """
        if self.exited.done():
            raise self._died(what)
        try:
            future = asyncio.wrap_future(send())
        except OSError as exc:  # broken pipe: the server is gone
            await asyncio.wait({self.exited}, timeout=2.0)
            raise self._died(what) from exc
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late reply is fine
        done, _ = await asyncio.wait({future, self.exited}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if future in done:
            try:
                return future.result()
            except JsonRpcException:
                raise
            except RuntimeError as exc:
                await asyncio.wait({self.exited}, timeout=2.0)
                if self.exited.done():
                    raise self._died(what) from exc
                raise
        if self.exited in done:
            raise self._died(what)
        raise TimeoutError(f"{what} got no answer within {timeout_s:g} s")

    # --- requests -----------------------------------------------------------------------
    async def infill(
        self,
        uri: str,
        text: str,
        position: types.Position,
        max_tokens: int | None = None,
        *,
        single_line: bool = False,
        timeout_s: float | None = None,
    ) -> Reply:
        """Open `text` as `uri`, infill an empty range at `position` (`single_line`: the fill is one
        line, as in HumanEval's single-line split), close it; errors become a Reply."""
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )
        rid = f"infill-{next(self.ids)}"
        where = Position(line=position.line, character=position.character)
        params = InfillParams(textDocument={"uri": uri}, range={"start": where, "end": where})
        if max_tokens is not None:
            params["maxTokens"] = max_tokens
        if single_line:
            params["singleLine"] = True
        timeout_s = self.request_timeout_s if timeout_s is None else timeout_s
        t0 = time.perf_counter()
        result, error = None, None
        try:
            result = await self._request(
                lambda: self.client.protocol.send_request(INFILL, params, msg_id=rid),
                timeout_s,
                f"the infill request for {uri}",
            )
            if result is None:
                error = "the server answered null (the request was superseded or cancelled)"
        except ServerError:
            raise
        except (JsonRpcException, RuntimeError) as exc:
            error = f"the server answered with an error: {exc}"
        except TimeoutError as exc:
            error = str(exc)
            self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=rid))
        latency = time.perf_counter() - t0
        if not self.exited.done():
            self.client.text_document_did_close(
                types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
            )
        times = self.drafts.pop(rid, [])
        first = times[0] - t0 if times else None
        if error is not None:
            return Reply(None, None, latency, first, len(times), error)
        stats = _get(result, "stats")
        stats = stats._asdict() if hasattr(stats, "_asdict") else dict(stats or {})
        return Reply(_get(result, "text"), stats, latency, first, len(times))
