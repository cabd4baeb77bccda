"""codila-lsp: inline completion and infilling over stdio, with streamed drafts.

Flow: request (handlers.py) -> the span and its context, read from the document (jobs.py) ->
decode on the worker thread -> one `codila/draft` notification per committed block -> the
response. A newer request for the same document, `$/cancelRequest`, or an edit at or before the
span cancels a decode within one iteration. Every request gets exactly one response: rpc.py
checks each message before pygls dispatches it, so nothing a client sends goes unanswered or
stops the server. Documents live on their own thread (documents.py); a request hands the decoder
only the context window it keeps. What codila adds to LSP is declared in protocol.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar, cast
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from codila_engine import installed_version
from codila_engine.decoding.events import Event, Result
from lsp_server import handlers, logs, rpc
from lsp_server.documents import Documents
from lsp_server.jobs import Job
from lsp_server.params import InfillParams
from lsp_server.positions import UTF16
from lsp_server.protocol import DECODING, DRAFT, FAILED, LOADING, DecodeStats, DraftParams, json_range
from lsp_server.settings import Settings, SettingsError, apply_options, describe
from lsp_server.worker import DecodeWorker, ModelsUnavailable, Unservable

log = logging.getLogger(__name__)
T = TypeVar("T")
RequestId = int | str


@dataclass
class Active:
    """A decode in flight for one document: what cancels it and the span it will replace."""

    id: RequestId
    cancel: threading.Event
    start: types.Position
    end: types.Position


class CodilaServer(LanguageServer):
    protocol: rpc.Protocol

    def __init__(self) -> None:
        super().__init__(
            "codila-lsp",
            installed_version() or "unknown",
            protocol_cls=rpc.Protocol,
            converter_factory=rpc.strict_converter,
        )
        self.settings = Settings()
        self.worker = DecodeWorker()
        self.documents = Documents()
        self.active: dict[str, list[Active]] = {}
        self.newest: dict[str, int] = {}  # document -> number of its latest request
        self.ids = itertools.count(1)
        self.client_log: logs.ClientLog | None = None  # once main() sets it up
        self.client_timeout = 10.0  # seconds the server waits on a request it sent to the client
        handlers.register(self)

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio through rpc.serve (pygls' own reader loses messages: see rpc.py)."""
        try:
            asyncio.run(rpc.serve(self.protocol, stdin or sys.stdin.buffer, stdout or sys.stdout.buffer))
        except BrokenPipeError:
            log.error("the client closed the connection")
        finally:
            self.shutdown()

    # --- messages to the user ----------------------------------------------------------
    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=f"codila: {message}"))

    def tell(self, message: str, kind: types.MessageType = types.MessageType.Error) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"codila: {message}"))

    # --- settings and models -----------------------------------------------------------
    def configure(self, options: object, load: bool = True) -> None:
        """Apply client options; a change of model settings reloads the models (unless `load` is
        off: at `initialize`, where `initialized` loads them once)."""
        try:
            settings, ignored = apply_options(self.settings, options)
        except SettingsError as exc:
            log.warning("rejected settings: %s", exc)
            self.tell(f"{exc}; keeping the previous settings")
            return
        if ignored:
            shown = ", ".join(ignored[:10]) + (f" and {len(ignored) - 10} more" if len(ignored) > 10 else "")
            self.tell(f"unknown settings ignored: {shown}", types.MessageType.Warning)
        reload = settings.model_key != self.settings.model_key
        self.settings = settings
        self.log(f"settings: {describe(settings)}")
        if reload and load:
            asyncio.get_running_loop().create_task(self.load_models())

    async def load_models(self) -> None:
        s = self.settings
        what = f"dlm={s.dlm or 'default'}, ar={s.ar or 'default'}, device={s.device or 'auto'}"
        self.log(f"loading models ({what})")
        token = await self.server_progress(LOADING, what)
        t0 = time.perf_counter()
        try:
            models = await self.worker.load(*s.model_key)
        except ModelsUnavailable as exc:
            self.progress_end(token, FAILED)
            self.tell(str(exc))
            return
        done = f"models loaded in {time.perf_counter() - t0:.1f}s: {models.name}"
        self.progress_end(token, done)
        self.log(done)

    # --- work-done progress ($/progress), for clients that show it -----------------------
    async def server_progress(self, title: str, message: str) -> str | None:
        """A server-initiated progress shown by the client, or None if it does not show any."""
        window = self.client_capabilities.window if self.client_capabilities else None
        if not (window and window.work_done_progress):
            return None
        token = f"codila-{next(self.ids)}"
        try:
            await self.protocol.ask(
                types.WINDOW_WORK_DONE_PROGRESS_CREATE,
                types.WorkDoneProgressCreateParams(token=token),
                self.client_timeout,
            )
        except (TimeoutError, JsonRpcException) as exc:  # the client did not answer or refused: no progress
            log.warning("no progress shown: window/workDoneProgress/create failed: %s", exc or "no answer")
            return None
        self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, message=message))
        return token

    def progress_begin(self, token: types.ProgressToken | None, title: str, message: str) -> None:
        if token is not None:
            self.work_done_progress.begin(
                token, types.WorkDoneProgressBegin(title=title, message=message, percentage=0)
            )

    def progress_report(self, token: types.ProgressToken | None, message: str, percentage: int) -> None:
        if token is not None:
            self.work_done_progress.report(token, types.WorkDoneProgressReport(message=message, percentage=percentage))

    def progress_end(self, token: types.ProgressToken | None, message: str) -> None:
        if token is not None:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
            self.work_done_progress.tokens.pop(token, None)  # pygls keeps every token it began

    # --- documents -----------------------------------------------------------------------
    @property
    def encoding(self) -> str:
        """The position encoding agreed at initialize (UTF-16 unless the client offered another)."""
        return self.workspace.position_encoding or UTF16

    def edited(self, params: types.DidChangeTextDocumentParams) -> None:
        """Cancel decodes whose span an edit touches or moves (an edit at or before its end)."""
        uri = unquote(params.text_document.uri)
        for change in params.content_changes:
            for job in self.active.get(uri, []):
                if not isinstance(change, types.TextDocumentContentChangePartial) or _before_or_at(
                    change.range.start, job.end
                ):
                    job.cancel.set()

    # --- decoding ----------------------------------------------------------------------
    def supersede(self, uri: str) -> int:
        """A new request for a document: the decodes still running for it stop, and so does any
        older request still being prepared (see `run`). Returns the request's number."""
        key = unquote(uri)
        self.newest[key] = number = next(self.ids)
        for older in self.active.get(key, []):
            older.cancel.set()
        return number

    def request_id(self) -> RequestId:
        rid = self.protocol.msg_id
        return rid if rid is not None else f"cmd-{next(self.ids)}"

    async def on_worker(self, call: Awaitable[T]) -> T:
        """Await the decode worker; missing models and decodes the models cannot run become error
        responses (the first also a message to the user)."""
        try:
            return await call
        except ModelsUnavailable as exc:
            self.tell(str(exc))
            raise JsonRpcInternalError(str(exc)) from None
        except Unservable as exc:
            raise JsonRpcInvalidParams(str(exc)) from None

    async def run(self, job: Job, rid: RequestId, number: int) -> list[tuple[Result, str]] | None:
        """Decode a job `job.count` times (seeds seed, seed + 1, ...), streaming the first decode's
        drafts; returns (result, text) per decode, or None when it was cancelled or a newer request
        (`number` is this one's, from `supersede`) came for the document meanwhile."""
        key = unquote(job.uri)  # how documents are keyed
        if self.newest.get(key) != number:
            return None
        cancel = threading.Event()
        me = Active(rid, cancel, job.range.start, job.range.end)
        self.active.setdefault(key, []).append(me)
        try:
            done = []
            for n in range(job.count):
                result = await self.decode(job, rid, cancel, n)
                if result.cancelled:
                    return None
                done.append((result, job.lead + result.text))
            return done
        finally:
            self.active[key].remove(me)
            if not self.active[key]:
                del self.active[key]

    async def decode(self, job: Job, rid: RequestId, cancel: threading.Event, n: int) -> Result:
        """Decode number `n` of a job; only the first streams drafts and progress."""
        cfg = job.config
        if n and cfg.seed is not None:
            cfg = cfg.with_options(seed=(cfg.seed + n) % 2**63)  # seeds stay in their range
        label = job.label + (f" #{n + 1}" if job.count > 1 else "")
        progress = job.progress if n == 0 else None
        t0 = time.perf_counter()
        self.progress_begin(progress, DECODING, label)
        committed = 0

        def on_event(event: Event) -> None:
            nonlocal committed
            if n == 0 and not cancel.is_set():
                shown = job.shape(job.lead + event.draft)  # placeholders cut with their text go with it
                self.draft(job, rid, shown, done=False, masks=event.masks[: shown.count(cfg.placeholder)])
                committed += len(event.positions)
                self.progress_report(
                    progress, f"{committed} of {cfg.span_tokens} tokens", min(100, 100 * committed // cfg.span_tokens)
                )

        def on_done(result: Result) -> None:
            """Log when the decode really ends, also after the request was cancelled."""
            total = time.perf_counter() - t0
            s = result.stats
            outcome = "cancelled" if result.cancelled else "done"
            self.progress_end(
                progress, f"{outcome}: {s.text_tokens} tokens, {s.tokens_per_s:.1f} tokens/s ({result.decoder} decoder)"
            )
            first = s.first_commit_s if s.first_commit_s is not None else total
            model = self.worker.models.name if self.worker.models else "?"
            self.log(
                f"{label}: {outcome} ({result.decoder} decoder, {model}), first block {first:.3f}s, "
                f"total {total:.3f}s, {s.text_tokens} tokens, {s.text_tokens / total if total else 0:.1f} "
                f"tokens/s, {s.iterations} iterations"
            )

        try:
            return await self.on_worker(
                self.worker.decode(self.settings.model_key, job.prefix, job.suffix, cfg, cancel, on_event, on_done)
            )
        except JsonRpcException:  # no decode ran, so on_done never ends the progress
            self.progress_end(progress, FAILED)
            raise

    def draft(
        self, job: Job, rid: RequestId, text: str, done: bool, result: Result | None = None, masks: tuple[int, ...] = ()
    ) -> None:
        """One `codila/draft` (`masks`: tokens behind each placeholder of `text`, in order); the
        final one (`done`) carries the decode's statistics."""
        params = DraftParams(uri=job.uri, id=rid, range=json_range(job.range), text=text, done=done, masks=list(masks))
        if result is not None:
            params["stats"] = self.stats(result)
        self.protocol.notify(DRAFT, params)

    def stats(self, result: Result) -> DecodeStats:
        """What a client shows about a decode (tokens, tokens/s, timings, decoder, model)."""
        model = self.worker.models.name if self.worker.models else None
        stats = {**result.stats.as_dict(), "decoder": result.decoder, "model": model, **self.worker.runs_on()}
        return cast(DecodeStats, stats)

    async def apply_edit(self, params: InfillParams, text: str) -> bool:
        """Ask the client to apply an infill; the user is told if it does not answer in time."""
        edit = types.WorkspaceEdit(changes={params.uri: [types.TextEdit(range=params.range, new_text=text)]})
        try:
            applied = await self.protocol.ask(
                types.WORKSPACE_APPLY_EDIT,
                types.ApplyWorkspaceEditParams(edit=edit, label="codila infill"),
                self.client_timeout,
            )
        except TimeoutError:
            self.tell(
                f"the editor did not answer workspace/applyEdit within {self.client_timeout:g} s: the infill "
                "was not applied",
                types.MessageType.Warning,
            )
            return False
        except JsonRpcException as exc:
            self.tell(f"the editor did not apply the infill: {exc.message}", types.MessageType.Warning)
            return False
        return bool(applied and applied.applied)


def _before_or_at(a: types.Position, b: types.Position) -> bool:
    return (a.line, a.character) <= (b.line, b.character)


server = CodilaServer()


def parse_args(argv: list[str] | None = None):
    import argparse

    from codila_engine.options import add_args
    from lsp_server.settings import KEYS, MODEL_KEYS

    p = argparse.ArgumentParser(
        prog="codila-lsp",
        description="codila's language server, over stdio: editors "
        "start it; settings from the editor (initializationOptions) override these flags",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {server.version}")
    add_args(p, [KEYS[key] for key in MODEL_KEYS])  # --dlm ... --engine-token-file
    p.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="what reaches stderr / --log-file (default: %(default)s)",
    )
    p.add_argument("--log-file", help="write the log here instead of stderr (default: stderr)")
    p.add_argument(
        "--client-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the editor to answer a request the server sends, such as "
        "workspace/applyEdit (default: %(default)s)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from dataclasses import replace

    args = parse_args(argv)
    server.client_log = logs.setup(
        args.log_level,
        args.log_file,
        lambda kind, message: server.window_log_message(types.LogMessageParams(type=kind, message=message)),
    )
    from lsp_server.settings import MODEL_KEYS

    server.settings = replace(server.settings, **{name: getattr(args, name) for name in MODEL_KEYS.values()})
    server.client_timeout = args.client_timeout
    server.start_io()
