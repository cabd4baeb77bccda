"""Choose the region around the cursor that the model fills.

A diffusion model fills a fixed number of mask tokens between a prefix and a
suffix, so before decoding we must decide where the fill starts and ends and
how many masks it gets. tree-sitter tells us what the cursor sits in; where
the user's half-typed code leaves it with ERROR nodes, line-based rules decide.

Rules, tried in order (offsets are str offsets, "end of line" excludes the
line break):

1. Non-whitespace right of the cursor on its line -> ``line_rest``: the fill
   replaces the rest of the line. In ``foo(|)`` the ``)`` is replaced too: the
   model rewrites the closing brackets together with the arguments, and the
   server drops whatever the fill repeats of the old text.
2. The cursor's line break lies inside an expression (open brackets, a
   multi-line string, a ``\\`` continuation) -> ``line_rest`` (the expression
   goes on, so this line is what the user is writing).
3. Otherwise look at the last code token before the cursor, skipping comments
   (on the cursor's line, or above it when the cursor line is blank or only a
   comment):
   - ``:`` of a compound statement (def, class, if, elif, else, for, while,
     with, try, except, finally, match, case; not lambda, dict or slice) ->
     ``block_body``, indented one level below the header, or as deep as an
     existing body or the whitespace left of the cursor.
   - a line that tree-sitter could not parse, or that ends in ``\\`` ->
     ``line_rest`` (the statement is unfinished), unless the line reads like a
     block header (then ``block_body``) or is a whole decorator.
   - a complete statement on the cursor's line -> ``next_statement`` at that
     statement's indentation.
   - a complete statement above a blank cursor line -> ``next_statement``
     indented like the whitespace left of the cursor (the editor's
     auto-indent), or else like the next non-blank line, so the insertion
     never breaks the code below it.
   ``block_body`` and ``next_statement`` spans run from the cursor to the end
   of the cursor's line (only whitespace is left there), so every span is a
   single-line range, as LSP inline completion requires; the fill is
   multi-line and the suffix starts with the line break, blank lines kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Literal

import tree_sitter_python
from tree_sitter import Language, Node, Parser

from lsp_server.positions import LineIndex, encode, offset_to_byte

PYTHON = Language(tree_sitter_python.language())
SUPPORTED_LANGUAGES = frozenset({"python"})

SpanKind = Literal["line_rest", "block_body", "next_statement"]

_COMPOUND = frozenset(
    {
        "function_definition",
        "class_definition",
        "if_statement",
        "elif_clause",
        "else_clause",
        "for_statement",
        "while_statement",
        "with_statement",
        "try_statement",
        "except_clause",
        "finally_clause",
        "match_statement",
        "case_clause",
    }
)
_HEADER_LINE = re.compile(
    r"[ \t]*(?:async[ \t]+)?"
    r"(?:def|class|if|elif|else|for|while|with|try|except|finally|match|case)\b.*:$"
)
_LAMBDA_COLON = re.compile(r"\blambda\b[^:]*:$")
_INDENT = re.compile(r"[ \t]*")
_BYTE_INDENT = re.compile(rb"[ \t]*")
_DEFAULT_INDENT_UNIT = "    "


@dataclass(frozen=True)
class SpanCaps:
    """Mask tokens per span kind: more masks cost more decoding steps."""

    line_rest: int = 16
    block_body: int = 64
    next_statement: int = 32

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SpanCaps.{field.name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class Span:
    """text[start:end] is replaced by the model's fill of `mask_tokens` masks.

    `indent` is the whitespace the fill's first new line starts with (for
    block_body and next_statement, whose fill begins at the cursor and so
    starts with a line break when the cursor follows code); None for line_rest.
    """

    kind: SpanKind
    start: int
    end: int
    indent: str | None
    mask_tokens: int


def language_error(language_id: str) -> str | None:
    """Why a document cannot be completed, or None when its language is supported."""
    if language_id in SUPPORTED_LANGUAGES:
        return None
    return f"codila completes Python only; this document's language is {language_id!r}"


def choose_span(text: str, offset: int, caps: SpanCaps = SpanCaps()) -> Span:
    """The span to fill for a cursor at str offset `offset` (see the module rules)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= len(text):
        raise ValueError(f"cursor offset {offset!r} is outside the text (length {len(text)})")
    index = LineIndex(text)
    line = index.line_of(offset)
    line_start, line_end = index.bounds(line)
    line_end = max(line_end, offset)  # a cursor between \r and \n
    line_rest = Span("line_rest", offset, line_end, None, caps.line_rest)
    if text[offset:line_end].strip():
        return line_rest

    data = encode(text)
    root = Parser(PYTHON).parse(data).root_node
    cursor = offset_to_byte(text, offset)
    if _inside_expression(root, cursor):
        return line_rest

    cursor_indent = _indent(text, line_start)[: offset - line_start]
    next_line = _next_text_line(index, line)
    next_indent = None if next_line is None else _indent(text, index.starts[next_line])
    end = line_end  # only whitespace is left on the line: the fill replaces it

    code_end = _code_end(root, data, cursor)
    if code_end is None:  # only blank lines and comments before the cursor
        verdict, anchor, on_cursor_line = "complete", 0, False
    else:
        verdict, anchor = _classify(root, data, code_end)
        on_cursor_line = code_end > offset_to_byte(text, line_start)
    anchor_indent = _byte_indent(data, _line_start_byte(data, anchor))
    if verdict == "header":
        candidates = [next_indent] + ([] if on_cursor_line else [cursor_indent])
        indent = _body_indent(anchor_indent, candidates, index)
        return Span("block_body", offset, end, indent, caps.block_body)
    if verdict == "incomplete":
        return line_rest
    indent = anchor_indent if on_cursor_line else (cursor_indent or next_indent or "")
    return Span("next_statement", offset, end, indent, caps.next_statement)


def _is_statement_level(node_type: str) -> bool:
    return (
        node_type in _COMPOUND
        or node_type in ("module", "block", "decorated_definition")
        or node_type.endswith(("_statement", "_definition"))
    )


def _inside_expression(root: Node, byte: int) -> bool:
    """Whether the innermost parsed node around `byte` is an expression, not a statement list.

    ERROR nodes say nothing about where we are, so they are looked through.
    """
    node: Node | None = root.descendant_for_byte_range(byte, byte)
    while node is not None:
        if node.start_byte < byte < node.end_byte and node.type != "ERROR":
            return not _is_statement_level(node.type)
        node = node.parent
    return False


def _code_end(root: Node, data: bytes, byte: int) -> int | None:
    """Byte just past the last code token before `byte`, skipping whitespace and comments."""
    end = len(data[:byte].rstrip())
    while end > 0:
        node = root.descendant_for_byte_range(end - 1, end)
        assert node is not None  # a byte inside the tree
        if node.type != "comment":
            return end
        end = len(data[: node.start_byte].rstrip())
    return None


def _indent(text: str, start: int = 0) -> str:
    """The spaces and tabs at text[start:] (the pattern matches anywhere, if only "")."""
    match = _INDENT.match(text, start)
    return match.group() if match else ""


def _byte_indent(data: bytes, start: int) -> str:
    match = _BYTE_INDENT.match(data, start)
    return match.group().decode() if match else ""


def _line_start_byte(data: bytes, byte: int) -> int:
    return max(data.rfind(b"\n", 0, byte), data.rfind(b"\r", 0, byte)) + 1


def _has_error(root: Node, low: int, high: int) -> bool:
    """Whether an ERROR or MISSING node touches data[low:high] (iterative: trees can be deep)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.start_byte > high or node.end_byte < low or not node.has_error:
            continue
        if node.is_missing or (node.type == "ERROR" and node.end_byte > low):
            return True
        stack.extend(node.children)
    return False


def _classify(root: Node, data: bytes, code_end: int) -> tuple[str, int]:
    """("header" | "incomplete" | "complete", byte whose line gives the indentation)."""
    tail = root.descendant_for_byte_range(code_end - 1, code_end)
    assert tail is not None  # a byte inside the tree
    if tail.type == ":" and tail.parent is not None and tail.parent.type in _COMPOUND:
        return "header", tail.parent.start_byte
    line_start = _line_start_byte(data, code_end - 1)
    continued = data[code_end - 1 : code_end] == b"\\"
    if not continued and not _has_error(root, line_start, code_end):
        return "complete", _statement_start(tail)
    code = data[line_start:code_end].decode("utf-8", "replace")
    if _HEADER_LINE.match(code) and not _LAMBDA_COLON.search(code):
        return "header", line_start
    if _ends_decorator(tail, code_end):
        return "complete", line_start
    return "incomplete", line_start


def _statement_start(node: Node) -> int:
    while node.parent is not None and node.parent.type not in ("block", "module", "ERROR"):
        node = node.parent
    return node.start_byte


def _ends_decorator(node: Node | None, code_end: int) -> bool:
    """A lone `@decorator` line parses as ERROR (no def yet) but is a finished line."""
    while node is not None:
        if node.type == "decorator" and node.end_byte == code_end:
            return True
        node = node.parent
    return False


def _next_text_line(index: LineIndex, line: int) -> int | None:
    for later in range(line + 1, index.line_count):
        start, end = index.bounds(later)
        if index.text[start:end].strip():
            return later
    return None


def _deeper(indent: str, than: str) -> bool:
    return len(indent.expandtabs(8)) > len(than.expandtabs(8))


def _body_indent(header_indent: str, candidates: list[str | None], index: LineIndex) -> str:
    """The first candidate deeper than the header, else one indent unit below it."""
    for candidate in candidates:
        if candidate is not None and _deeper(candidate, header_indent):
            return candidate
    return header_indent + _indent_unit(index)


def _indent_unit(index: LineIndex) -> str:
    """The step the document indents by after its first block header (4 spaces if none)."""
    previous = None
    for line in range(index.line_count):
        start, end = index.bounds(line)
        text = index.text[start:end]
        if not text.strip():
            continue
        if previous is not None and previous.rstrip().endswith(":"):
            outer = _indent(previous)
            inner = _indent(text)
            if inner.startswith(outer) and len(inner) > len(outer):
                return inner[len(outer) :]
        previous = text
    return _DEFAULT_INDENT_UNIT
