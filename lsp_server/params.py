"""Parameters of the custom request `codila/infill` and the command `codila.infillSelection`.

lsprotocol has no types for these, so the message layer (rpc.py) calls these parsers on the
plain JSON before a handler runs; errors say which field is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from codila_engine.config import is_int

USAGE = (
    'expected {"textDocument": {"uri": ...}, "range": {"start": {"line", "character"}, '
    '"end": {...}}, "maxTokens"?: int, "singleLine"?: bool} (or the arguments [uri, range])'
)
UINTEGER_MAX = 2**31 - 1  # LSP's uinteger


@dataclass(frozen=True)
class InfillParams:
    uri: str
    range: types.Range
    max_tokens: int | None = None
    single_line: bool = False  # the fill is one line: the fim decoder stops at its end


def _uinteger(value: Any, low: int = 0) -> bool:
    return is_int(value) and low <= value <= UINTEGER_MAX


def _position(value: Any, where: str) -> types.Position:
    if not isinstance(value, dict):
        raise JsonRpcInvalidParams(f"codila/infill: {where} must be a position object; {USAGE}")
    for name in ("line", "character"):
        if not _uinteger(value.get(name)):
            raise JsonRpcInvalidParams(
                f"codila/infill: {where}.{name} must be an integer in [0, 2^31), got {value.get(name)!r}"
            )
    return types.Position(line=value["line"], character=value["character"])


def parse_infill_params(raw: Any) -> InfillParams:
    """`codila/infill` params (an object), or the command's arguments (a list of one such object,
    or [uri, range])."""
    if isinstance(raw, (list, tuple)) and len(raw) == 2:  # command arguments [uri, range]
        raw = {"textDocument": {"uri": raw[0]}, "range": raw[1]}
    elif isinstance(raw, (list, tuple)) and len(raw) == 1:
        raw = raw[0]
    if not isinstance(raw, dict):
        raise JsonRpcInvalidParams(f"codila/infill: {USAGE}")
    doc = raw.get("textDocument")
    uri = doc.get("uri") if isinstance(doc, dict) else None
    if not isinstance(uri, str):
        raise JsonRpcInvalidParams(f"codila/infill: textDocument.uri is missing; {USAGE}")
    rng = raw.get("range")
    if not isinstance(rng, dict):
        raise JsonRpcInvalidParams(f"codila/infill: range is missing; {USAGE}")
    start, end = _position(rng.get("start"), "range.start"), _position(rng.get("end"), "range.end")
    max_tokens = raw.get("maxTokens")
    if max_tokens is not None and not _uinteger(max_tokens, 1):
        raise JsonRpcInvalidParams(f"codila/infill: maxTokens must be a positive integer, got {max_tokens!r}")
    single_line = raw.get("singleLine", False)
    if not isinstance(single_line, bool):
        raise JsonRpcInvalidParams(f"codila/infill: singleLine must be true or false, got {single_line!r}")
    return InfillParams(uri, types.Range(start=start, end=end), max_tokens, single_line)
