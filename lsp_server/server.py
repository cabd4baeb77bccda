"""codila-lsp: inline completion and infilling over stdio, with streamed drafts.

Flow: request -> span choice (tree-sitter) -> decode on the worker thread -> one
`codila/draft` notification per committed block -> the response. A newer request for the same
document, `$/cancelRequest`, or an edit at or before the span cancels a decode within one
iteration. Bad requests get an error response; nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from codila_engine import installed_version
from codila_engine.events import Event, Result
from lsp_server import fill
from lsp_server.params import InfillParams, parse_infill_params
from lsp_server.positions import PositionError, offsets_to_range, position_to_offset
from lsp_server.settings import Settings, SettingsError, apply_options, describe
from lsp_server.spans import Span, choose_span, language_error
from lsp_server.worker import DecodeWorker, ModelsUnavailable

log = logging.getLogger(__name__)
DRAFT = "codila/draft"
INFILL = "codila/infill"
INFILL_COMMAND = "codila.infillSelection"


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
    prefix: str  # document text before the span, plus the fill's lead
    suffix: str
    lead: str
    range: types.Range  # what the result replaces, in the client's position encoding
    mask_tokens: int
    label: str  # for logs: what was asked where
    single_line: bool = False  # the fill is one line (fim stops at its end)
    progress: object = None  # the request's workDoneToken: decoding progress goes there


class CodilaServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("codila-lsp", installed_version() or "unknown")
        self.settings = Settings()
        self.worker = DecodeWorker()
        self.active: dict[str, list[Active]] = {}
        self.ids = itertools.count(1)
        self.client_log = None  # logs.ClientLog once main() sets it up

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
            self.tell(f"{exc}; keeping the previous settings")
            return
        if ignored:
            self.tell(f"unknown settings ignored: {', '.join(ignored)}", types.MessageType.Warning)
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
            await asyncio.wait_for(self.work_done_progress.create_async(token), 5)
        except Exception as exc:  # a client that does not answer or refuses: no progress, nothing else lost
            log.warning("no progress shown: window/workDoneProgress/create failed: %s", exc)
            return None
        self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, message=message))
        return token

    def progress_begin(self, token, title: str, message: str) -> None:
        if token is not None:
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, message=message,
                                                                             percentage=0))

    def progress_report(self, token, message: str, percentage: int) -> None:
        if token is not None:
            self.work_done_progress.report(token, types.WorkDoneProgressReport(message=message,
                                                                               percentage=percentage))

    def progress_end(self, token, message: str) -> None:
        if token is not None:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    # --- documents ---------------------------------------------------------------------
    def document(self, uri: str):
        doc = self.workspace.text_documents.get(unquote(uri))
        if doc is None:
            raise JsonRpcInvalidParams(f"unknown document {uri}: open it (textDocument/didOpen) before asking")
        problem = language_error(doc.language_id or "")
        if problem:
            raise JsonRpcInvalidParams(problem)
        return doc

    def offset(self, text: str, position: types.Position) -> int:
        try:
            return position_to_offset(text, position, encoding=self.workspace.position_encoding)
        except PositionError as exc:
            raise JsonRpcInvalidParams(str(exc)) from exc

    def to_range(self, text: str, start: int, end: int) -> types.Range:
        return offsets_to_range(text, start, end, encoding=self.workspace.position_encoding)

    def edited(self, params: types.DidChangeTextDocumentParams) -> None:
        """Cancel decodes whose span an edit touches or moves (an edit at or before its end)."""
        uri = unquote(params.text_document.uri)
        for change in params.content_changes:
            whole = not isinstance(change, types.TextDocumentContentChangePartial)
            for job in self.active.get(uri, []):
                if whole or _before_or_at(change.range.start, job.end):
                    job.cancel.set()

    # --- decoding ----------------------------------------------------------------------
    def supersede(self, uri: str) -> None:
        """A newer request for a document cancels the decodes still running for it."""
        for older in self.active.get(unquote(uri), []):
            older.cancel.set()

    async def run(self, job: Job) -> tuple[Result | None, str]:
        """Decode a job, streaming drafts; returns (None, '') when it was cancelled."""
        rid = self.protocol.msg_id
        rid = rid if rid is not None else f"cmd-{next(self.ids)}"
        cancel = threading.Event()
        self.supersede(job.uri)
        me = Active(rid, cancel, job.range.start, job.range.end)
        key = unquote(job.uri)  # how pygls keys documents
        self.active.setdefault(key, []).append(me)
        cfg = self.settings.decode.with_options(max_new_tokens=job.mask_tokens, single_line=job.single_line)
        t0 = time.perf_counter()

        self.progress_begin(job.progress, "codila: decoding", job.label)
        committed = 0

        def on_event(event: Event) -> None:
            nonlocal committed
            if not cancel.is_set():
                self.draft(job, rid, job.lead + event.draft, done=False)
                committed += len(event.positions)
                self.progress_report(job.progress, f"{committed} of {cfg.span_tokens} tokens",
                                     min(100, 100 * committed // cfg.span_tokens))

        def on_done(result: Result) -> None:
            """Log when the decode really ends, also after the request was cancelled."""
            total = time.perf_counter() - t0
            s = result.stats
            self.progress_end(job.progress, f"{'cancelled' if result.cancelled else 'done'}: {s.text_tokens} tokens, "
                                            f"{s.tokens_per_s:.1f} tokens/s ({result.decoder} decoder)")
            first = s.first_commit_s if s.first_commit_s is not None else total
            model = self.worker.models.name if self.worker.models else "?"
            self.log(f"{job.label}: {'cancelled' if result.cancelled else 'done'} ({result.decoder} decoder, {model}), "
                     f"first block {first:.3f}s, "
                     f"total {total:.3f}s, {s.text_tokens} tokens, {s.text_tokens / total if total else 0:.1f} "
                     f"tokens/s, {s.iterations} iterations")

        try:
            result = await self.worker.decode(self.settings.model_key, job.prefix, job.suffix, cfg, cancel,
                                              on_event, on_done)
        except ModelsUnavailable as exc:
            self.tell(str(exc))
            raise JsonRpcInternalError(str(exc)) from exc
        finally:
            self.active[key].remove(me)
            if not self.active[key]:
                del self.active[key]
        if result.cancelled:
            return None, ""
        return result, job.lead + result.text

    def draft(self, job: Job, rid, text: str, done: bool, result: Result | None = None) -> None:
        """One `codila/draft`; the final one (`done`) carries the decode's statistics."""
        params = {"uri": job.uri, "id": rid, "range": _json_range(job.range), "text": text, "done": done}
        if result is not None:
            params["stats"] = self.stats(result)
        self.protocol.notify(DRAFT, params)

    def stats(self, result: Result) -> dict:
        """What a client shows about a decode (tokens, tokens/s, timings, decoder, model): it never
        needs to parse log text."""
        model = self.worker.models.name if self.worker.models else None
        return {**result.stats.as_dict(), "decoder": result.decoder, "model": model}

    def inline_job(self, uri: str, position: types.Position, progress=None) -> tuple[Job, Span]:
        doc = self.document(uri)
        text = doc.source
        offset = self.offset(text, position)
        span = choose_span(text, offset, self.settings.caps)
        lead = fill.lead(text, span)
        return Job(
            uri=uri, prefix=text[: span.start] + lead, suffix=text[span.end :], lead=lead,
            range=self.to_range(text, span.start, span.end), mask_tokens=span.mask_tokens,
            label=f"inline {span.kind} at {position.line + 1}:{position.character + 1}",
            single_line=span.kind == "line_rest", progress=progress,
        ), span

    async def infill_job(self, params: InfillParams) -> Job:
        doc = self.document(params.uri)
        text = doc.source
        start, end = self.offset(text, params.range.start), self.offset(text, params.range.end)
        if end < start:
            raise JsonRpcInvalidParams("range end is before its start")
        if params.max_tokens is not None:
            n = params.max_tokens
        else:
            count = await self.worker.count_tokens(self.settings.model_key, text[start:end]) if end > start else 0
            n = self.settings.infill.mask_tokens(count)
        return Job(uri=params.uri, prefix=text[:start], suffix=text[end:], lead="",
                   range=self.to_range(text, start, end), mask_tokens=n,
                   label=f"infill {params.range.start.line + 1}:{params.range.start.character + 1}"
                         f"-{params.range.end.line + 1}:{params.range.end.character + 1} ({n} masks)")

    async def infill(self, params: InfillParams) -> dict | None:
        self.supersede(params.uri)
        job = await self.infill_job(params)
        result, text = await self.run(job)
        if result is None:
            return None
        self.draft(job, self.protocol.msg_id, text, done=True, result=result)
        return {"range": _json_range(job.range), "text": text, "stats": self.stats(result)}


def _before_or_at(a: types.Position, b: types.Position) -> bool:
    return (a.line, a.character) <= (b.line, b.character)


def _json_range(r: types.Range) -> dict:
    return {"start": {"line": r.start.line, "character": r.start.character},
            "end": {"line": r.end.line, "character": r.end.character}}


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


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: CodilaServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.edited(params)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: CodilaServer, params: types.DidCloseTextDocumentParams) -> None:
    for job in ls.active.get(unquote(params.text_document.uri), []):
        job.cancel.set()


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(ls: CodilaServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    if params.context.selected_completion_info is not None:
        # the item would have to extend the popup's choice; leave that moment to the popup
        return types.InlineCompletionList(items=[])
    ls.supersede(params.text_document.uri)
    job, span = ls.inline_job(params.text_document.uri, params.position, params.work_done_token)
    result, text = await ls.run(job)
    if result is None:
        return types.InlineCompletionList(items=[])
    text = fill.trim(text, span, job.suffix)
    ls.draft(job, ls.protocol.msg_id, text, done=True, result=result)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=job.range)])


@server.feature(INFILL)
async def infill(ls: CodilaServer, params) -> dict | None:
    return await ls.infill(parse_infill_params(params))


@server.command(INFILL_COMMAND)
async def infill_selection(ls: CodilaServer, *args) -> dict | None:
    """Infill the selection and apply the result as a workspace edit."""
    params = parse_infill_params(args[0] if len(args) == 1 else list(args))
    reply = await ls.infill(params)
    if reply is None:
        return None
    edit = types.WorkspaceEdit(changes={params.uri: [types.TextEdit(range=params.range, new_text=reply["text"])]})
    applied = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label="codila infill"))
    reply["applied"] = bool(applied and applied.applied)
    return reply


def parse_args(argv: list[str] | None = None):
    import argparse

    from codila_engine.config import DTYPES

    p = argparse.ArgumentParser(prog="codila-lsp", description="codila's language server, over stdio: editors "
                                "start it; settings from the editor (initializationOptions) override these flags")
    p.add_argument("--version", action="version", version=f"%(prog)s {server.version}")
    p.add_argument("--dlm", help="DLM folder (default: the shipped pair, if any, else none)")
    p.add_argument("--ar", help="AR folder (default: the shipped pair's, else the default model)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", choices=("auto", *DTYPES), help="(default: auto)")
    p.add_argument("--cache-dir", help="where the default model is prepared (default: $CODILA_CACHE_DIR, else "
                                       "$XDG_CACHE_HOME/codila, else ~/.cache/codila)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"),
                   help="what reaches stderr / --log-file (default: %(default)s)")
    p.add_argument("--log-file", help="write the log here instead of stderr (default: stderr)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from dataclasses import replace

    from lsp_server import logs

    args = parse_args(argv)
    server.client_log = logs.setup(args.log_level, args.log_file, lambda kind, message: server.window_log_message(
        types.LogMessageParams(type=kind, message=message)))
    server.settings = replace(server.settings, dlm=args.dlm, ar=args.ar, device=args.device, dtype=args.dtype,
                              cache_dir=args.cache_dir)
    server.start_io()
