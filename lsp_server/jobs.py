"""What a request asks the decoder for, read from its document on the documents thread.

A request becomes a Job: the span to fill (chosen by tree-sitter for an inline completion, the
selection for an infill), the context window around it, and the decode's settings. Anything
wrong with the request (a position outside the document, a language codila does not complete,
a document or selection too large) becomes an invalid-params error here, before any decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from codila_engine.config import DecodeConfig, OptionError
from lsp_server import fill
from lsp_server.documents import Document
from lsp_server.params import InfillParams
from lsp_server.positions import LONE_SURROGATE, PositionError, offsets_to_range, position_to_offset, window
from lsp_server.settings import Settings
from lsp_server.spans import Span, choose_span, language_error

MAX_DOCUMENT_CHARS = 8 * 2**20  # larger documents stay open, but are not completed
MAX_SELECTION_CHARS = 100_000  # an infill replaces at most this much text
CHARS_PER_TOKEN = 16  # context handed to the decoder: maxContext tokens * this, each side of the span


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
    progress: types.ProgressToken | None = None  # the request's workDoneToken: decoding progress goes there
    count: int = 1  # decodes, with seeds seed, seed + 1, ...: one item each
    span: Span | None = None  # an inline completion's span: its text is trimmed to what the span asks for

    def shape(self, text: str) -> str:
        """A draft or final text as the editor shows it: one function for both, so the last
        streamed draft is the result (an infill's text is kept whole)."""
        return fill.trim(text, self.span, self.suffix) if self.span is not None else text


@dataclass(frozen=True)
class Selection:
    """An infill's selection and the context around it."""

    prefix: str
    text: str
    suffix: str
    range: types.Range


def usable(doc: Document) -> str:
    """The document's text, if codila can complete it."""
    problem = language_error(doc.language_id or "")
    if problem:
        raise JsonRpcInvalidParams(problem)
    if len(doc.text) > MAX_DOCUMENT_CHARS:
        raise JsonRpcInvalidParams(
            f"{doc.uri} has {len(doc.text):,} characters; codila completes documents of up to {MAX_DOCUMENT_CHARS:,}"
        )
    return doc.text


def offset(text: str, position: types.Position, encoding: str) -> int:
    try:
        return position_to_offset(text, position, encoding=encoding)
    except PositionError as exc:
        raise JsonRpcInvalidParams(str(exc)) from exc


def context(text: str, start: int, end: int, settings: Settings) -> tuple[int, str]:
    """Where the context window around text[start:end] starts, and its text as the model reads it
    (a lone surrogate becomes U+FFFD: one character for one, so offsets hold)."""
    lo, hi = window(text, start, end, settings.decode.max_context * CHARS_PER_TOKEN)
    return lo, LONE_SURROGATE.sub("\ufffd", text[lo:hi])


def decode_config(settings: Settings, tokens: int, single_line: bool = False) -> DecodeConfig:
    try:
        return settings.decode.with_options(max_new_tokens=tokens, single_line=single_line)
    except OptionError as exc:
        raise JsonRpcInvalidParams(f"{tokens} mask tokens: {exc.problem}") from None


def inline_job(
    settings: Settings,
    encoding: str,
    doc: Document,
    params: types.InlineCompletionParams,
) -> Job:
    """The decode an inline completion asks for, and its span."""
    text = usable(doc)
    position = params.position
    at = offset(text, position, encoding)
    lo, part = context(text, at, at, settings)
    span = choose_span(part, at - lo, settings.caps)
    lead = fill.lead(part, span)
    return Job(
        uri=params.text_document.uri,
        prefix=part[: span.start] + lead,
        suffix=part[span.end :],
        lead=lead,
        range=offsets_to_range(text, lo + span.start, lo + span.end, encoding=encoding),
        config=decode_config(settings, span.mask_tokens, single_line=span.kind == "line_rest"),
        label=f"inline {span.kind} at {position.line + 1}:{position.character + 1}",
        progress=params.work_done_token,
        count=settings.suggestions,
        span=span,
    )


def selection(settings: Settings, encoding: str, doc: Document, rng: types.Range) -> Selection:
    """An infill's selection and its context."""
    text = usable(doc)
    start, end = offset(text, rng.start, encoding), offset(text, rng.end, encoding)
    if end < start:
        raise JsonRpcInvalidParams("range end is before its start")
    if end - start > MAX_SELECTION_CHARS:
        raise JsonRpcInvalidParams(
            f"the selection has {end - start:,} characters; codila infills at most {MAX_SELECTION_CHARS:,}"
        )
    lo, part = context(text, start, end, settings)
    return Selection(
        part[: start - lo],
        part[start - lo : end - lo],
        part[end - lo :],
        offsets_to_range(text, start, end, encoding=encoding),
    )


def infill_job(settings: Settings, params: InfillParams, sel: Selection, tokens: int) -> Job:
    """The decode an infill asks for: `tokens` masks in place of the selection."""
    r = params.range
    return Job(
        uri=params.uri,
        prefix=sel.prefix,
        suffix=sel.suffix,
        lead="",
        range=sel.range,
        config=decode_config(settings, tokens, single_line=params.single_line),
        label=f"infill {r.start.line + 1}:{r.start.character + 1}-{r.end.line + 1}:{r.end.character + 1} "
        f"({tokens} masks)",
    )
