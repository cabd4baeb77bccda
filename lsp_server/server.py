"""codila-lsp: inline completion and infilling over stdio, with streamed drafts.

Flow: request -> span choice (tree-sitter) -> decode on the worker thread -> one
`codila/draft` notification per committed block -> the response. A newer request for the same
document, `$/cancelRequest`, or an edit at or before the span cancels a decode within one
iteration. Every request gets exactly one response: rpc.py checks each message before pygls
dispatches it, so nothing a client sends goes unanswered or stops the server. Documents live on
their own thread (documents.py); a request hands the decoder only the context window it keeps.
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
from typing import ClassVar, TypeVar
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from codila_engine import installed_version
from codila_engine.config import DecodeConfig, OptionError
from codila_engine.decoding.events import Event, Result
from lsp_server import fill, rpc
from lsp_server.documents import Document, Documents
from lsp_server.params import InfillParams, parse_infill_params
from lsp_server.positions import LONE_SURROGATE, PositionError, offsets_to_range, position_to_offset, window
from lsp_server.settings import Settings, SettingsError, apply_options, as_options, describe
from lsp_server.spans import Span, choose_span, language_error
from lsp_server.worker import DecodeWorker, ModelsUnavailable, Unservable

log = logging.getLogger(__name__)
T = TypeVar("T")
DRAFT = "codila/draft"
INFILL = "codila/infill"
SETTINGS = "codila/settings"
INFILL_COMMAND = "codila.infillSelection"
MAX_DOCUMENT_CHARS = 8 * 2**20  # larger documents stay open, but are not completed
MAX_SELECTION_CHARS = 100_000  # an infill replaces at most this much text
CHARS_PER_TOKEN = 16  # context handed to the decoder: maxContext tokens * this, each side of the span


@dataclass
class Active:
    """A decode in flight for one document: what cancels it and the span it will replace."""

    id: object
    cancel: threading.Event
    start: types.Position
    end: types.Position


@dataclass
class Job:
    """Everything one decode needs, fixed when the request arrives."""

    uri: str  # exactly as the client sent it: drafts echo it (`#` or `%` in a path must survive)
    prefix: str  # text before the span (its context window), plus the fill's lead
    suffix: str  # text after the span (its context window)
    lead: str
    range: types.Range  # what the result replaces, in the client's position encoding
    config: DecodeConfig  # max_new_tokens: the span's masks; single_line: fim stops at the line's end
    label: str  # for logs: what was asked where
    progress: object = None  # the request's workDoneToken: decoding progress goes there
    count: int = 1  # decodes, with seeds seed, seed + 1, ...: one item each


@dataclass(frozen=True)
class Selection:
    """An infill's selection and the context around it, read on the documents thread."""

    prefix: str
    text: str
    suffix: str
    range: types.Range


class CodilaProtocol(rpc.Protocol):
    custom: ClassVar = {INFILL: parse_infill_params}
    commands: ClassVar = {INFILL_COMMAND: parse_infill_params}


class CodilaServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "codila-lsp",
            installed_version() or "unknown",
            protocol_cls=CodilaProtocol,
            converter_factory=rpc.strict_converter,
        )
        self.settings = Settings()
        self.worker = DecodeWorker()
        self.documents = Documents()
        self.active: dict[str, list[Active]] = {}
        self.newest: dict[str, int] = {}  # document -> number of its latest request
        self.ids = itertools.count(1)
        self.client_log = None  # logs.ClientLog once main() sets it up
        self.client_timeout = 10.0  # seconds the server waits on a request it sent to the client

    def start_io(self, stdin=None, stdout=None) -> None:
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
    def configure(self, options, load: bool = True) -> None:
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
        token = await self.server_progress("codila: loading models", what)
        t0 = time.perf_counter()
        try:
            await self.worker.load(*s.model_key)
        except ModelsUnavailable as exc:
            self.progress_end(token, "failed")
            self.tell(str(exc))
            return
        done = f"models loaded in {time.perf_counter() - t0:.1f}s: {self.worker.models.name}"
        self.progress_end(token, done)
        self.log(done)

    # --- work-done progress ($/progress), for clients that show it -----------------------
    async def server_progress(self, title: str, message: str):
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

    def progress_begin(self, token, title: str, message: str) -> None:
        if token is not None:
            self.work_done_progress.begin(
                token, types.WorkDoneProgressBegin(title=title, message=message, percentage=0)
            )

    def progress_report(self, token, message: str, percentage: int) -> None:
        if token is not None:
            self.work_done_progress.report(token, types.WorkDoneProgressReport(message=message, percentage=percentage))

    def progress_end(self, token, message: str) -> None:
        if token is not None:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
            self.work_done_progress.tokens.pop(token, None)  # pygls keeps every token it began

    # --- documents (these run on the documents thread) ------------------------------------
    @property
    def encoding(self) -> str:
        """The position encoding agreed at initialize (UTF-16 unless the client offered another)."""
        return self.workspace.position_encoding

    def usable(self, doc: Document) -> str:
        """The document's text, if codila can complete it."""
        problem = language_error(doc.language_id or "")
        if problem:
            raise JsonRpcInvalidParams(problem)
        if len(doc.text) > MAX_DOCUMENT_CHARS:
            raise JsonRpcInvalidParams(
                f"{doc.uri} has {len(doc.text):,} characters; codila completes documents "
                f"of up to {MAX_DOCUMENT_CHARS:,}"
            )
        return doc.text

    def offset(self, text: str, position: types.Position) -> int:
        try:
            return position_to_offset(text, position, encoding=self.encoding)
        except PositionError as exc:
            raise JsonRpcInvalidParams(str(exc)) from exc

    def to_range(self, text: str, start: int, end: int) -> types.Range:
        return offsets_to_range(text, start, end, encoding=self.encoding)

    def context(self, text: str, start: int, end: int) -> tuple[int, str]:
        """Where the context window around text[start:end] starts, and its text as the model
        reads it (a lone surrogate becomes U+FFFD: one character for one, so offsets hold)."""
        lo, hi = window(text, start, end, self.settings.decode.max_context * CHARS_PER_TOKEN)
        return lo, LONE_SURROGATE.sub("\ufffd", text[lo:hi])

    def edited(self, params: types.DidChangeTextDocumentParams) -> None:
        """Cancel decodes whose span an edit touches or moves (an edit at or before its end)."""
        uri = unquote(params.text_document.uri)
        for change in params.content_changes:
            whole = not isinstance(change, types.TextDocumentContentChangePartial)
            for job in self.active.get(uri, []):
                if whole or _before_or_at(change.range.start, job.end):
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

    def request_id(self):
        rid = self.protocol.msg_id
        return rid if rid is not None else f"cmd-{next(self.ids)}"

    def decode_config(self, tokens: int, single_line: bool = False) -> DecodeConfig:
        try:
            return self.settings.decode.with_options(max_new_tokens=tokens, single_line=single_line)
        except OptionError as exc:
            raise JsonRpcInvalidParams(f"{tokens} mask tokens: {exc.problem}") from None

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

    async def run(self, job: Job, rid, number: int) -> list[tuple[Result, str]] | None:
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

    async def decode(self, job: Job, rid, cancel: threading.Event, n: int) -> Result:
        """Decode number `n` of a job; only the first streams drafts and progress."""
        cfg = job.config
        if n and cfg.seed is not None:
            cfg = cfg.with_options(seed=(cfg.seed + n) % 2**63)  # seeds stay in their range
        label = job.label + (f" #{n + 1}" if job.count > 1 else "")
        progress = job.progress if n == 0 else None
        t0 = time.perf_counter()
        self.progress_begin(progress, "codila: decoding", label)
        committed = 0

        def on_event(event: Event) -> None:
            nonlocal committed
            if n == 0 and not cancel.is_set():
                self.draft(job, rid, job.lead + event.draft, done=False, masks=event.masks)
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
            self.progress_end(progress, "failed")
            raise

    def draft(
        self, job: Job, rid, text: str, done: bool, result: Result | None = None, masks: tuple[int, ...] = ()
    ) -> None:
        """One `codila/draft` (`masks`: tokens behind each placeholder of `text`, in order); the
        final one (`done`) carries the decode's statistics."""
        params = {
            "uri": job.uri,
            "id": rid,
            "range": _json_range(job.range),
            "text": text,
            "done": done,
            "masks": list(masks),
        }
        if result is not None:
            params["stats"] = self.stats(result)
        self.protocol.notify(DRAFT, params)

    def stats(self, result: Result) -> dict:
        """What a client shows about a decode (tokens, tokens/s, timings, decoder, model): it never
        needs to parse log text."""
        model = self.worker.models.name if self.worker.models else None
        return {**result.stats.as_dict(), "decoder": result.decoder, "model": model}

    def inline_job(self, uri: str, doc: Document, position: types.Position, progress=None) -> tuple[Job, Span]:
        """The decode an inline completion asks for (on the documents thread)."""
        text = self.usable(doc)
        offset = self.offset(text, position)
        lo, part = self.context(text, offset, offset)
        span = choose_span(part, offset - lo, self.settings.caps)
        lead = fill.lead(part, span)
        return Job(
            uri=uri,
            prefix=part[: span.start] + lead,
            suffix=part[span.end :],
            lead=lead,
            range=self.to_range(text, lo + span.start, lo + span.end),
            config=self.decode_config(span.mask_tokens, single_line=span.kind == "line_rest"),
            label=f"inline {span.kind} at {position.line + 1}:{position.character + 1}",
            progress=progress,
            count=self.settings.suggestions,
        ), span

    def selection(self, doc: Document, rng: types.Range) -> Selection:
        """An infill's selection and its context (on the documents thread)."""
        text = self.usable(doc)
        start, end = self.offset(text, rng.start), self.offset(text, rng.end)
        if end < start:
            raise JsonRpcInvalidParams("range end is before its start")
        if end - start > MAX_SELECTION_CHARS:
            raise JsonRpcInvalidParams(
                f"the selection has {end - start:,} characters; codila infills at most {MAX_SELECTION_CHARS:,}"
            )
        lo, part = self.context(text, start, end)
        return Selection(
            part[: start - lo], part[start - lo : end - lo], part[end - lo :], self.to_range(text, start, end)
        )

    async def infill_job(self, params: InfillParams) -> Job:
        sel = await self.documents.read(params.uri, lambda doc: self.selection(doc, params.range))
        if params.max_tokens is not None:
            n = params.max_tokens
        else:
            count = await self.on_worker(self.worker.count_tokens(self.settings.model_key, sel.text)) if sel.text else 0
            n = self.settings.infill.mask_tokens(count)
        r = params.range
        return Job(
            uri=params.uri,
            prefix=sel.prefix,
            suffix=sel.suffix,
            lead="",
            range=sel.range,
            config=self.decode_config(n, single_line=params.single_line),
            label=f"infill {r.start.line + 1}:{r.start.character + 1}-{r.end.line + 1}:{r.end.character + 1} "
            f"({n} masks)",
        )

    async def infill(self, params: InfillParams) -> dict | None:
        number, rid = self.supersede(params.uri), self.request_id()
        job = await self.infill_job(params)
        done = await self.run(job, rid, number)
        if done is None:
            return None
        result, text = done[0]
        self.draft(job, rid, text, done=True, result=result)
        return {"range": _json_range(job.range), "text": text, "stats": self.stats(result)}

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


def _json_range(r: types.Range) -> dict:
    return {
        "start": {"line": r.start.line, "character": r.start.character},
        "end": {"line": r.end.line, "character": r.end.character},
    }


server = CodilaServer()


@server.feature(types.INITIALIZE)
def initialize(ls: CodilaServer, params: types.InitializeParams) -> None:
    if ls.client_log is not None:
        ls.client_log.attach(asyncio.get_running_loop())
    ls.configure(params.initialization_options, load=False)


@server.feature(types.INITIALIZED)
async def initialized(ls: CodilaServer, params: types.InitializedParams) -> None:
    await ls.load_models()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: CodilaServer, params: types.DidChangeConfigurationParams) -> None:
    ls.configure(params.settings)


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: CodilaServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.documents.open(params.text_document)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: CodilaServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.edited(params)
    ls.documents.change(params, ls.encoding)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: CodilaServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.supersede(params.text_document.uri)  # stops its decodes
    ls.newest.pop(unquote(params.text_document.uri))
    ls.documents.close(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(ls: CodilaServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    if params.context.selected_completion_info is not None:
        # the item would have to extend the popup's choice; leave that moment to the popup
        return types.InlineCompletionList(items=[])
    uri, rid = params.text_document.uri, ls.request_id()
    number = ls.supersede(uri)
    job, span = await ls.documents.read(
        uri, lambda doc: ls.inline_job(uri, doc, params.position, params.work_done_token)
    )
    done = await ls.run(job, rid, number)
    if done is None:
        return types.InlineCompletionList(items=[])
    texts = [fill.trim(text, span, job.suffix) for _, text in done]
    ls.draft(job, rid, texts[0], done=True, result=done[0][0])
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text=text, range=job.range) for text in texts]
    )


@server.feature(INFILL)
async def infill(ls: CodilaServer, params: InfillParams) -> dict | None:
    return await ls.infill(params)


@server.feature(SETTINGS)
def current_settings(ls: CodilaServer, params) -> dict:
    """The settings in force, by the client's names."""
    return as_options(ls.settings)


@server.command(INFILL_COMMAND)
async def infill_selection(ls: CodilaServer, *args: InfillParams) -> dict | None:
    """Infill the selection and apply the result as a workspace edit. rpc.py parsed the arguments
    into one InfillParams (`*args`: pygls would structure a typed parameter again)."""
    params = args[0]
    reply = await ls.infill(params)
    if reply is not None:
        reply["applied"] = await ls.apply_edit(params, reply["text"])
    return reply


def parse_args(argv: list[str] | None = None):
    import argparse

    from codila_engine.config import DTYPES

    p = argparse.ArgumentParser(
        prog="codila-lsp",
        description="codila's language server, over stdio: editors "
        "start it; settings from the editor (initializationOptions) override these flags",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {server.version}")
    p.add_argument("--dlm", help="DLM folder (default: the shipped pair, if any, else none)")
    p.add_argument("--ar", help="AR folder (default: the shipped pair's, else the default model)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument(
        "--dtype",
        choices=("auto", *DTYPES),
        help="weights and compute dtype: auto picks bfloat16 on CUDA and on CPUs where it is measured "
        "faster, float32 otherwise (default: auto)",
    )
    p.add_argument(
        "--cache-dir",
        help="where the default model is prepared (default: $CODILA_CACHE_DIR, else "
        "$XDG_CACHE_HOME/codila, else ~/.cache/codila)",
    )
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

    from lsp_server import logs

    args = parse_args(argv)
    server.client_log = logs.setup(
        args.log_level,
        args.log_file,
        lambda kind, message: server.window_log_message(types.LogMessageParams(type=kind, message=message)),
    )
    server.settings = replace(
        server.settings, dlm=args.dlm, ar=args.ar, device=args.device, dtype=args.dtype, cache_dir=args.cache_dir
    )
    server.client_timeout = args.client_timeout
    server.start_io()
