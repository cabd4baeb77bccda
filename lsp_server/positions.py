"""Conversions between the three ways we point into a document.

LSP clients send (line, character) with character counted in UTF-16 code units,
tree-sitter works on UTF-8 byte offsets, and the engine slices Python strings.
Mixing them up is silent until a line holds an é or an emoji, so every
conversion goes through here.
"""

from __future__ import annotations

import bisect
import re

from lsprotocol.types import Position, Range

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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


def _units(char: str, encoding: str = UTF16) -> int:
    if encoding == UTF16:
        return 2 if ord(char) > 0xFFFF else 1
    if encoding == UTF8:
        return len(char.encode("utf-8", "surrogatepass"))
    if encoding == UTF32:
        return 1
    raise ValueError(f"unknown position encoding {encoding!r}")


def column_length(text: str, encoding: str = UTF16) -> int:
    """Length of a string as an LSP client counts it (UTF-16 units unless the client and
    server agreed on another position encoding at initialize)."""
    return sum(_units(c, encoding) for c in text)


def _check_offset(text: str, offset: int) -> None:
    if not 0 <= offset <= len(text):
        raise PositionError(
            f"offset {offset} is outside the document (length {len(text)} characters)"
        )


def position_to_offset(
    text: str, position: Position, index: LineIndex | None = None, encoding: str = UTF16
) -> int:
    """String offset of an LSP position.

    A character inside a surrogate pair rounds down to the start of that
    character, so a half-counted emoji is never split.
    """
    index = index or LineIndex(text)
    line, character = position.line, position.character
    if line < 0 or character < 0 or line >= index.line_count:
        raise PositionError(
            f"position line {line}, character {character} is outside the document "
            f"({index.line_count} lines)"
        )
    start, end = index.bounds(line)
    units = 0
    for offset in range(start, end):
        if units == character:
            return offset
        units += _units(text[offset], encoding)
        if units > character:
            return offset
    if units == character:
        return end
    raise PositionError(
        f"position line {line}, character {character} is outside the document "
        f"(line {line} has {units} characters)"
    )


def offset_to_position(
    text: str, offset: int, index: LineIndex | None = None, encoding: str = UTF16
) -> Position:
    """LSP position of a string offset; an offset inside \\r\\n maps to the line's end."""
    index = index or LineIndex(text)
    line = index.line_of(offset)
    start, end = index.bounds(line)
    return Position(line=line, character=column_length(text[start : min(offset, end)], encoding))


def range_to_offsets(text: str, range_: Range, encoding: str = UTF16) -> tuple[int, int]:
    """(start, end) string offsets of an LSP range."""
    index = LineIndex(text)
    start = position_to_offset(text, range_.start, index, encoding)
    end = position_to_offset(text, range_.end, index, encoding)
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
    index = LineIndex(text)
    return Range(
        start=offset_to_position(text, start, index, encoding),
        end=offset_to_position(text, end, index, encoding),
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
        raise PositionError(
            f"byte offset {byte} is outside the document (length {len(data)} bytes)"
        )
    while 0 < byte < len(data) and data[byte] & 0xC0 == 0x80:
        byte -= 1
    return len(data[:byte].decode("utf-8", "surrogatepass"))
