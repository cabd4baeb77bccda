"""Parameters of the custom request `codila/infill` and the command `codila.infillSelection`.

pygls hands custom requests over as namedtuples and command arguments as plain JSON, so both
are normalised to dicts and checked here, with errors that say which field is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

USAGE = ('expected {"textDocument": {"uri": ...}, "range": {"start": {"line", "character"}, '
         '"end": {...}}, "maxTokens"?: int} (or the arguments [uri, range])')


@dataclass(frozen=True)
class InfillParams:
    uri: str
    range: types.Range
    max_tokens: int | None = None


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _position(value: Any, where: str) -> types.Position:
    if not isinstance(value, dict):
        raise JsonRpcInvalidParams(f"codila/infill: {where} must be a position object; {USAGE}")
    line, char = value.get("line"), value.get("character")
    for name, v in (("line", line), ("character", char)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise JsonRpcInvalidParams(f"codila/infill: {where}.{name} must be a non-negative integer, got {v!r}")
    return types.Position(line=line, character=char)


def parse_infill_params(raw: Any) -> InfillParams:
    raw = _plain(raw)
    if isinstance(raw, list) and len(raw) == 2:  # command arguments [uri, range]
        raw = {"textDocument": {"uri": raw[0]}, "range": raw[1]}
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
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise JsonRpcInvalidParams(f"codila/infill: maxTokens must be a positive integer, got {max_tokens!r}")
    return InfillParams(uri, types.Range(start=start, end=end), max_tokens)
