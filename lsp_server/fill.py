"""From a span to the text the editor inserts: what goes before the model's tokens, and how
the model's fill is trimmed to what the span kind promises.

Pure functions on strings, shared by inline completion and by the final `codila/draft`.
"""

from __future__ import annotations

import re

from lsp_server.spans import Span

_INDENT = re.compile(r"[ \t]*")


def lead(text: str, span: Span) -> str:
    """Line break and indentation the fill starts with, given to the model as prefix.

    A body or next statement after code on the cursor's line starts on a new line at the
    span's indentation; on a blank line only the missing part of the indentation is added.
    Handing these to the model as context gets the indentation right and saves tokens.
    """
    if span.indent is None:
        return ""
    line_start = max(text.rfind("\n", 0, span.start), text.rfind("\r", 0, span.start)) + 1
    before = text[line_start : span.start]
    if before.strip():
        return "\n" + span.indent
    return span.indent[len(before) :] if span.indent.startswith(before) else ""


def _indent_of(line: str) -> str:
    match = _INDENT.match(line)
    return match.group() if match else ""  # the pattern matches anywhere, if only ""


def trim(fill: str, span: Span, suffix: str) -> str:
    """Keep what the span kind asks for.

    line_rest: one line. block_body / next_statement: stop where a line dedents below the
    span's indentation (the block is over), drop trailing blank lines, and drop trailing lines
    that repeat the code right after the span (the suffix already has them).
    """
    if span.indent is None:
        return fill.split("\n", 1)[0].rstrip("\r")
    lines = fill.split("\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if line.strip() and len(_indent_of(line)) < len(span.indent):
            break
        kept.append(line)
    while len(kept) > 1 and not kept[-1].strip():
        kept.pop()
    following = [line.strip() for line in suffix.split("\n") if line.strip()]
    for k in range(len(kept) - 1, 0, -1):
        if [line.strip() for line in kept[-k:]] == following[:k]:
            kept = kept[:-k]
            break
    return "\n".join(kept).rstrip()
