"""Conversions between the three ways we point into a document.

LSP clients send (line, character) with character counted in UTF-16 code units,
tree-sitter works on UTF-8 byte offsets, and the engine slices Python strings.
Mixing them up is silent until a line holds an é or an emoji, so every
conversion goes through here.
"""

from __future__ import annotations

import bisect
import re
from itertools import islice

from lsprotocol.types import Position, Range

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # legal in JSON strings, but not text a tokenizer takes


class PositionError(ValueError):
    """A position, range or offset that does not point into the document."""


class LineIndex:
    """Where each line starts, so repeated conversions on one text stay cheap.

    Lines break on \\n, \\r\\n and \\r, as in LSP (str.splitlines breaks on more).
    """

    def __init__(self, text: str):
        self.text = text
        breaks = list(_LINE_BREAK.finditer(text))
        self.starts = [0] + [m.end() for m in breaks]
        self.ends = [m.start() for m in breaks] + [len(text)]

    @property
    def line_count(self) -> int:
        return len(self.starts)

    def bounds(self, line: int) -> tuple[int, int]:
        """Start and end offsets of a line; the end excludes its line break."""
        return self.starts[line], self.ends[line]

    def line_of(self, offset: int) -> int:
        """The line holding an offset; an offset inside a \\r\\n belongs to its line."""
        _check_offset(self.text, offset)
        return bisect.bisect_right(self.starts, offset) - 1


UTF16, UTF8, UTF32 = "utf-16", "utf-8", "utf-32"  # LSP 3.17 position encodings
_CODECS = {UTF16: ("utf-16-le", 2), UTF8: ("utf-8", 1)}  # codec, bytes per unit (UTF-32 counts characters)


def column_length(text: str, encoding: str = UTF16) -> int:
    """Length of a string as an LSP client counts it (UTF-16 units unless the client and
    server agreed on another position encoding at initialize); a lone surrogate is one unit."""
    if encoding == UTF32:
        return len(text)
    if encoding not in _CODECS:
        raise ValueError(f"unknown position encoding {encoding!r}")
    codec, unit = _CODECS[encoding]
    return len(text.encode(codec, "surrogatepass")) // unit


def _check_offset(text: str, offset: int) -> None:
    if not 0 <= offset <= len(text):
        raise PositionError(f"offset {offset} is outside the document (length {len(text)} characters)")


def line_count(text: str, end: int | None = None) -> int:
    """Lines of text[:end] as LSP counts them (at C speed: no index of a large text is built)."""
    end = len(text) if end is None else end
    return text.count("\n", 0, end) + text.count("\r", 0, end) - text.count("\r\n", 0, end) + 1


def _line_bounds(text: str, line: int, index: LineIndex | None) -> tuple[int, int] | None:
    """Start and end of a line (the end excludes its break), or None past the last line."""
    if index is not None:
        return index.bounds(line) if 0 <= line < index.line_count else None
    if line < 0:
        return None
    start = 0
    if line > 0:
        brk = next(islice(_LINE_BREAK.finditer(text), line - 1, None), None)
        if brk is None:
            return None
        start = brk.end()
    return start, line_end(text, start)


def position_to_offset(
    text: str,
    position: Position,
    index: LineIndex | None = None,
    encoding: str = UTF16,
    clamp: bool = False,
) -> int:
    """String offset of an LSP position.

    A character inside a surrogate pair rounds down to the start of that character, so a
    half-counted emoji is never split. With `clamp`, a character past the end of its line
    means the line's end and a line past the last one the document's end (as LSP asks of
    edits); otherwise both are errors.
    """
    line, character = position.line, position.character
    bounds = _line_bounds(text, line, index) if character >= 0 else None
    if bounds is None:
        if clamp:
            return len(text) if line >= 0 else 0
        raise PositionError(
            f"position line {line}, character {character} is outside the document "
            f"({index.line_count if index else line_count(text)} lines)"
        )
    start, end = bounds
    if column_length(text[start:end], encoding) == end - start:  # one unit per character
        if character <= end - start:
            return start + character
        units = end - start
    else:
        units = 0
        for offset in range(start, end):
            if units == character:
                return offset
            units += column_length(text[offset], encoding)
            if units > character:
                return offset
        if units == character:
            return end
    if clamp:
        return end
    raise PositionError(
        f"position line {line}, character {character} is outside the document (line {line} has {units} characters)"
    )


def offset_to_position(text: str, offset: int, index: LineIndex | None = None, encoding: str = UTF16) -> Position:
    """LSP position of a string offset; an offset inside \\r\\n maps to the line's end."""
    _check_offset(text, offset)
    if 0 < offset < len(text) and text[offset - 1 : offset + 1] == "\r\n":
        offset -= 1
    if index is not None:
        line = index.line_of(offset)
        start = index.starts[line]
    else:
        line = line_count(text, offset) - 1
        start = line_start(text, offset)
    return Position(line=line, character=column_length(text[start:offset], encoding))


def line_start(text: str, offset: int) -> int:
    """Offset where the line holding `offset` starts."""
    return max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1


def line_end(text: str, offset: int) -> int:
    """Offset where the line holding `offset` ends (before its break)."""
    brk = _LINE_BREAK.search(text, offset)
    return brk.start() if brk else len(text)


def window(text: str, start: int, end: int, chars: int) -> tuple[int, int]:
    """Offsets (lo, hi) around text[start:end]: whole lines within `chars` characters of each
    side, and always the whole lines of `start` and `end` (so a long line is never cut)."""
    lo, hi = max(0, start - chars), min(len(text), end + chars)
    if lo > 0:
        brk = _LINE_BREAK.search(text, lo, start)
        lo = brk.end() if brk else line_start(text, start)
    if hi < len(text):
        last = max(text.rfind("\n", end, hi), text.rfind("\r", end, hi))
        hi = last + 1 if last >= 0 else line_end(text, end)
    return lo, hi


def range_to_offsets(text: str, range_: Range, encoding: str = UTF16) -> tuple[int, int]:
    """(start, end) string offsets of an LSP range."""
    start = position_to_offset(text, range_.start, encoding=encoding)
    end = position_to_offset(text, range_.end, encoding=encoding)
    if end < start:
        raise PositionError(
            f"range ends (line {range_.end.line}, character {range_.end.character}) before "
            f"it starts (line {range_.start.line}, character {range_.start.character})"
        )
    return start, end


def offsets_to_range(text: str, start: int, end: int, encoding: str = UTF16) -> Range:
    """LSP range covering text[start:end]."""
    if end < start:
        raise PositionError(f"range end {end} is before its start {start}")
    return Range(
        start=offset_to_position(text, start, encoding=encoding),
        end=offset_to_position(text, end, encoding=encoding),
    )


def encode(text: str) -> bytes:
    """UTF-8 bytes as tree-sitter should see them; lone surrogates survive as 3 bytes."""
    return text.encode("utf-8", "surrogatepass")


def offset_to_byte(text: str, offset: int) -> int:
    """UTF-8 byte offset of a string offset."""
    _check_offset(text, offset)
    return len(encode(text[:offset]))


def byte_to_offset(text: str, byte: int) -> int:
    """String offset of a UTF-8 byte offset.

    A byte inside a multi-byte character rounds down to that character's start.
    """
    data = encode(text)
    if not 0 <= byte <= len(data):
        raise PositionError(f"byte offset {byte} is outside the document (length {len(data)} bytes)")
    while 0 < byte < len(data) and data[byte] & 0xC0 == 0x80:
        byte -= 1
    return len(data[:byte].decode("utf-8", "surrogatepass"))
