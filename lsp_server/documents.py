"""The open documents, kept off the event loop.

One thread applies every didOpen, didChange and didClose in the order they arrive, and runs each
request's preparation (positions, span, context window) after the changes sent before it, so the
event loop never walks a large text. Lines break as LSP says (\\n, \\r\\n, \\r; pygls' own
workspace splits on every `str.splitlines` break, form feeds included), and an edit whose range
runs past a line or the document is clamped to it, as LSP asks. Closing a document hands the
freed memory back to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from lsp_server.positions import position_to_offset

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Document:
    uri: str  # as the client sent it
    language_id: str
    version: int
    text: str


def _libc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)  # glibc only


_MALLOC_TRIM = _libc_trim()


def release_memory() -> None:
    """Hand freed heap pages back to the system: glibc keeps them, so a closed 5 MB document left
    the process hundreds of MiB above its idle size."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class Documents:
    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}  # keyed like pygls: by the unquoted uri
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codila-documents")

    def open(self, item: types.TextDocumentItem) -> None:
        self._submit(self._open, item)

    def change(self, params: types.DidChangeTextDocumentParams, encoding: str) -> None:
        self._submit(self._change, params, encoding)

    def close(self, uri: str) -> None:
        self._submit(self._close, uri)

    async def read(self, uri: str, prepare: Callable[[Document], T]) -> T:
        """prepare(document) on the documents thread, once the changes sent before have applied;
        JsonRpcInvalidParams for a document that is not open."""
        return await asyncio.wrap_future(self._pool.submit(self._read, uri, prepare))

    def _submit(self, fn: Callable, *args) -> None:
        self._pool.submit(fn, *args).add_done_callback(_log_failure)

    def _open(self, item: types.TextDocumentItem) -> None:
        self._docs[unquote(item.uri)] = Document(item.uri, item.language_id, item.version, item.text)

    def _change(self, params: types.DidChangeTextDocumentParams, encoding: str) -> None:
        doc = self._docs.get(unquote(params.text_document.uri))
        if doc is None:
            raise JsonRpcInvalidParams(f"didChange for {params.text_document.uri}, which is not open")
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start = position_to_offset(doc.text, change.range.start, encoding=encoding, clamp=True)
                end = position_to_offset(doc.text, change.range.end, encoding=encoding, clamp=True)
                doc.text = doc.text[:start] + change.text + doc.text[max(start, end) :]
            else:
                doc.text = change.text
        doc.version = params.text_document.version

    def _close(self, uri: str) -> None:
        if self._docs.pop(unquote(uri), None) is None:
            raise JsonRpcInvalidParams(f"didClose for {uri}, which is not open")
        release_memory()

    def _read(self, uri: str, prepare: Callable[[Document], T]) -> T:
        doc = self._docs.get(unquote(uri))
        if doc is None:
            raise JsonRpcInvalidParams(f"unknown document {uri}: open it (textDocument/didOpen) before asking")
        return prepare(doc)


def _log_failure(future: Future) -> None:
    """A notification's failure: one warning for the client's mistake, a traceback for a bug."""
    error = future.exception()
    if isinstance(error, JsonRpcException):
        log.warning("%s", error.message)
    elif error is not None:
        log.error("document update failed", exc_info=error)
