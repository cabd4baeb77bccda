"""Every message codila-lsp handles, registered in one place (`register`), and the handlers.

Handlers stay short: what a request asks for is read from its document in jobs.py, and the
decode flow (cancelling, drafts, progress) is the server's (server.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from lsprotocol import types

from lsp_server import jobs, protocol
from lsp_server.params import InfillParams, parse_infill_params
from lsp_server.settings import as_options

if TYPE_CHECKING:
    from lsp_server.server import CodilaServer


def register(ls: CodilaServer) -> None:
    """The one table of handlers: method, handler, what initialize advertises for it, and the
    parser of a custom method's params (or a command's arguments) that rpc.py runs first."""
    features: list[tuple[str, Callable[..., Any], Any, Callable[[Any], Any] | None]] = [
        (types.INITIALIZE, initialize, None, None),
        (types.INITIALIZED, initialized, None, None),
        (types.WORKSPACE_DID_CHANGE_CONFIGURATION, did_change_configuration, None, None),
        (types.TEXT_DOCUMENT_DID_OPEN, did_open, None, None),
        (types.TEXT_DOCUMENT_DID_CHANGE, did_change, None, None),
        (types.TEXT_DOCUMENT_DID_CLOSE, did_close, None, None),
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_completion, types.InlineCompletionOptions(), None),
        (protocol.INFILL, infill, None, parse_infill_params),
        (protocol.SETTINGS, current_settings, None, None),
    ]
    commands = [(protocol.INFILL_COMMAND, infill_selection, parse_infill_params)]  # workspace/executeCommand
    for method, handler, options, parse in features:
        ls.feature(method, options)(handler)
        if parse is not None:
            ls.protocol.custom[method] = parse
    for name, handler, parse in commands:
        ls.command(name)(handler)
        ls.protocol.commands[name] = parse


# --- lifecycle and settings -------------------------------------------------------------
def initialize(ls: CodilaServer, params: types.InitializeParams) -> None:
    if ls.client_log is not None:
        ls.client_log.attach(asyncio.get_running_loop())
    ls.configure(params.initialization_options, load=False)


async def initialized(ls: CodilaServer, params: types.InitializedParams) -> None:
    await ls.load_models()


def did_change_configuration(ls: CodilaServer, params: types.DidChangeConfigurationParams) -> None:
    ls.configure(params.settings)


def current_settings(ls: CodilaServer, params: None) -> protocol.Settings:
    """The settings in force, by the client's names."""
    return as_options(ls.settings)


# --- documents --------------------------------------------------------------------------
def did_open(ls: CodilaServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.documents.open(params.text_document)


def did_change(ls: CodilaServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.edited(params)
    ls.documents.change(params, ls.encoding)


def did_close(ls: CodilaServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.supersede(params.text_document.uri)  # stops its decodes
    ls.newest.pop(unquote(params.text_document.uri))
    ls.documents.close(params.text_document.uri)


# --- completion and infilling -----------------------------------------------------------
async def inline_completion(ls: CodilaServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    if params.context.selected_completion_info is not None:
        # the item would have to extend the popup's choice; leave that moment to the popup
        return types.InlineCompletionList(items=[])
    uri, rid = params.text_document.uri, ls.request_id()
    number = ls.supersede(uri)
    job = await ls.documents.read(uri, lambda doc: jobs.inline_job(ls.settings, ls.encoding, doc, params))
    done = await ls.run(job, rid, number)
    if done is None:
        return types.InlineCompletionList(items=[])
    texts = [job.shape(text) for _, text in done]
    ls.draft(job, rid, texts[0], done=True, result=done[0][0])
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text=text, range=job.range) for text in texts]
    )


async def infill(ls: CodilaServer, params: InfillParams) -> protocol.InfillResult | None:
    number, rid = ls.supersede(params.uri), ls.request_id()
    sel = await ls.documents.read(params.uri, lambda doc: jobs.selection(ls.settings, ls.encoding, doc, params.range))
    if params.max_tokens is not None:
        tokens = params.max_tokens
    else:
        count = await ls.on_worker(ls.worker.count_tokens(ls.settings.model_key, sel.text)) if sel.text else 0
        tokens = ls.settings.infill.mask_tokens(count)
    job = jobs.infill_job(ls.settings, params, sel, tokens)
    done = await ls.run(job, rid, number)
    if done is None:
        return None
    result, text = done[0]
    ls.draft(job, rid, text, done=True, result=result)
    return {"range": protocol.json_range(job.range), "text": text, "stats": ls.stats(result)}


async def infill_selection(ls, *args: InfillParams) -> protocol.InfillCommandResult | None:
    """Infill the selection and apply the result as a workspace edit. rpc.py parsed the arguments
    into one InfillParams (`*args`: pygls would structure a typed parameter again). pygls reads a
    command's annotations when it runs it, where CodilaServer is not defined: `ls` has none."""
    params = args[0]
    reply = await infill(ls, params)
    if reply is None:
        return None
    return {**reply, "applied": await ls.apply_edit(params, reply["text"])}
