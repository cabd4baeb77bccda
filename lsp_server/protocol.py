"""What codila adds to LSP, in one place: its methods, its command, and the JSON shapes of their
params and results (TypedDicts: keys as they go over the wire).

The server, the evaluation client (codila_engine/eval/client.py) and the editors
(editors/vscode, editors/nvim) use these names: tests/test_protocol.py fails on a method one of
them uses that is not declared here, on one declared here that none uses, and on a server whose
handlers differ from these lists; tests/test_server.py checks the real server's messages against
these shapes.

Streaming: LSP cannot stream an inline completion, so while a request decodes the server sends
`codila/draft` notifications carrying that request's id; the final one (`done`) equals the
result and carries the decode's statistics. Only codila's own clients render drafts; any other
client still gets the result as the response.

Cancelling is LSP's `$/cancelRequest` (answered with error -32800). A request superseded by a
newer one for the same document, or whose span an edit touched or moved, answers an empty
result: no items for an inline completion, null for `codila/infill` and the command.

Progress is LSP's `$/progress`: a request's `workDoneToken` gets the decode's progress
(DECODING, with the percentage of the span's tokens committed); the server creates its own
token for loading the models (LOADING), ended with FAILED when they could not be loaded.

Settings go in `initializationOptions`, or in `workspace/didChangeConfiguration` as
`{"codila": {...}}`, by the names `codila/settings` answers with (lsp_server/settings.py).

(No `from __future__ import annotations` here: TypedDict sees NotRequired only in evaluated ones.)
"""

from typing import Any, NotRequired, TypedDict

from lsprotocol import types


class Position(TypedDict):
    line: int
    character: int  # in the position encoding agreed at initialize (UTF-16 by default)


class Range(TypedDict):
    start: Position
    end: Position


def json_range(r: types.Range) -> Range:
    """An lsprotocol Range as JSON."""
    return {
        "start": {"line": r.start.line, "character": r.start.character},
        "end": {"line": r.end.line, "character": r.end.character},
    }


class TextDocument(TypedDict):
    uri: str


class DecodeStats(TypedDict):
    """One decode's statistics (codila_engine's Stats, and what decoded it): what a client shows
    about a completion, so that it never parses log text."""

    iterations: int
    tokens: int  # span tokens the decoder committed
    text_tokens: int  # tokens in the final text
    wall_s: float
    dlm_s: float  # DLM forward passes
    cond_s: float  # marginals -> soft tokens
    ar_s: float  # AR block decoding
    select_s: float  # choosing and sampling what to commit
    first_commit_s: float | None
    tokens_per_s: float  # text tokens per second of wall time
    decoder: str  # codila, dlm, dream, fim
    model: str | None  # the loaded models' name
    device: NotRequired[str]  # where they run (cpu, cuda:0; a team server's own)
    dtype: NotRequired[str]  # float32, bfloat16, ...


class DraftParams(TypedDict):
    """`codila/draft`: the span of request `id` as decoded so far."""

    uri: str  # the document, exactly as the client sent it
    id: int | str  # the JSON-RPC id of the request the draft belongs to
    range: Range  # what the result will replace
    text: str  # the span so far, each run of still-masked tokens one placeholder (setting `placeholder`)
    done: bool  # the final draft: its text is the result's
    masks: list[int]  # the masked tokens behind each placeholder of `text`, in order
    stats: NotRequired[DecodeStats]  # on the final draft only


class InfillParams(TypedDict):
    """`codila/infill`: decode the selection `range` anew, with the text around it as context."""

    textDocument: TextDocument
    range: Range  # the selection the fill replaces (empty: an insertion point)
    maxTokens: NotRequired[int]  # mask tokens (default: the selection's tokens plus a margin, setting infill*)
    singleLine: NotRequired[bool]  # the fill is one line: the fim decoder stops at its end
    workDoneToken: NotRequired[int | str]  # VS Code sends one; infill reports no progress (yet)


class InfillResult(TypedDict):
    range: Range  # what `text` replaces: the selection
    text: str
    stats: DecodeStats


class InfillCommandResult(InfillResult):
    applied: bool  # the editor applied the result (workspace/applyEdit)


# the command's arguments: one InfillParams, or a document and a range
InfillCommandArguments = tuple[InfillParams] | tuple[str, Range]
Settings = dict[str, Any]  # the settings in force, by the names clients send them with

# --- codila's methods: name -> (params, result) ---------------------------------------------
DRAFT = "codila/draft"
INFILL = "codila/infill"
SETTINGS = "codila/settings"
INFILL_COMMAND = "codila.infillSelection"  # run with workspace/executeCommand

REQUESTS: dict[str, tuple[Any, Any]] = {  # client -> server
    INFILL: (InfillParams, InfillResult | None),  # None: superseded or cancelled
    SETTINGS: (None, Settings),
}
NOTIFICATIONS: dict[str, Any] = {DRAFT: DraftParams}  # server -> client
COMMANDS: dict[str, tuple[Any, Any]] = {
    INFILL_COMMAND: (InfillCommandArguments, InfillCommandResult | None),  # infill and apply the result
}

# --- the standard LSP methods codila uses (lsprotocol has their shapes) ----------------------
HANDLED = frozenset(  # client -> server: what the server registers a handler for
    {
        types.INITIALIZE,
        types.INITIALIZED,
        types.WORKSPACE_DID_CHANGE_CONFIGURATION,
        types.TEXT_DOCUMENT_DID_OPEN,
        types.TEXT_DOCUMENT_DID_CHANGE,
        types.TEXT_DOCUMENT_DID_CLOSE,
        types.TEXT_DOCUMENT_INLINE_COMPLETION,
    }
)
BUILTIN = frozenset(  # client -> server, answered by pygls itself
    {types.SHUTDOWN, types.EXIT, types.CANCEL_REQUEST, types.WORKSPACE_EXECUTE_COMMAND}
)
SENT = frozenset(  # server -> client
    {
        types.WINDOW_LOG_MESSAGE,
        types.WINDOW_SHOW_MESSAGE,
        types.WINDOW_WORK_DONE_PROGRESS_CREATE,
        types.PROGRESS,
        types.WORKSPACE_APPLY_EDIT,
    }
)

# --- $/progress titles, and how a failed load ends --------------------------------------------
LOADING = "codila: loading models"
DECODING = "codila: decoding"
FAILED = "failed"  # the end of a progress whose work failed (for loading: clients pause completions)
