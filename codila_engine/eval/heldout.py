"""Infilling tasks cut from held-out Python files, and how a fill is scored.

The files come from the training corpus's held-out split (whole files, chosen by content hash),
so no model saw them. Two kinds of span:

- `single-line`: one logical line that fits on one physical line (a statement or a block
  header such as `for x in xs:`), at least MIN_LINE_CHARS long; the span is the line after its
  indentation. Found with `tokenize`, so docstring text and continuation lines never qualify.
- `multi-line`: 2-5 physical lines made of consecutive sibling statements of one block body
  (a function, loop, branch, class ...), from the first statement's first character to the end
  of the last statement's line. Found with `ast`.

Files are taken in a seeded shuffle, at most one task per file and kind, spans capped at
MAX_SPAN_CHARS. The model sees up to PREFIX_CHARS before the span (from a line start) and
SUFFIX_CHARS after it (to a line end). A fill is syntax-valid when the whole original file with
the fill in place parses, and an exact match when it equals the truth up to trailing whitespace
on each line and blank lines around it.
"""

from __future__ import annotations

import ast
import io
import random
import tokenize
from dataclasses import dataclass
from typing import Iterable

from codila_engine.eval.humaneval import parses

KINDS = ("single-line", "multi-line")
MIN_LINE_CHARS = 8
MAX_SPAN_CHARS = {"single-line": 120, "multi-line": 400}  # longer spans would dominate the decode time
MULTI_LINES = (2, 5)
PREFIX_CHARS, SUFFIX_CHARS = 1500, 600


@dataclass(frozen=True)
class HeldOutTask:
    task_id: str  # "<source>:<first line>:<kind>"
    kind: str
    prefix: str  # what the model sees before the span (the end of `before`, from a line start)
    middle: str  # the truth
    suffix: str  # what the model sees after the span (the start of `after`, to a line end)
    before: str  # the whole file before the span
    after: str  # the whole file after the span

    def program(self, fill: str) -> str:
        return self.before + fill + self.after


def normalize(text: str) -> str:
    """Trailing whitespace of each line and blank lines around the text do not count."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def exact_match(fill: str, truth: str) -> bool:
    return normalize(fill) == normalize(truth)


def syntax_valid(task: HeldOutTask, fill: str) -> bool:
    return parses(task.program(fill))


# --- spans -------------------------------------------------------------------------------
# A span is (first line, start column, last line): lines 1-based; it runs from the column on
# the first line to the end of the last line (its line break stays in the suffix).
Span = tuple[int, int, int]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def single_line_spans(text: str) -> list[Span]:
    """Logical lines that start and end on the same physical line, long enough to be worth it."""
    lines = text.split("\n")
    spans, start = [], None
    skip = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if start is None and tok.type not in skip and tok.type != tokenize.ENDMARKER:
            start = tok.start[0]
        elif start is not None and tok.type == tokenize.NEWLINE:
            line = lines[start - 1]
            if tok.start[0] == start and len(line.strip()) >= MIN_LINE_CHARS:
                spans.append((start, _indent(line), start))
            start = None
    return spans


def multi_line_spans(tree: ast.Module, text: str) -> list[Span]:
    """Runs of sibling statements in a block body covering 2-5 lines, each run whole lines."""
    lines = text.split("\n")
    spans = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module) or not isinstance(body, list) or not body:
            continue
        for i, first in enumerate(body):
            if first.col_offset != _indent(lines[first.lineno - 1]):  # not first on its line: `if x: y`
                continue
            top = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
            for j in range(i, len(body)):
                last = body[j].end_lineno
                if last - top + 1 > MULTI_LINES[1]:
                    break
                shared = j + 1 < len(body) and body[j + 1].lineno == last  # `a = 1; b = 2`
                if last - top + 1 >= MULTI_LINES[0] and not shared:
                    spans.append((top, _indent(lines[top - 1]), last))
    return spans


# --- tasks -------------------------------------------------------------------------------
def _bounds(text: str, spans: list[Span]) -> list[tuple[int, int]]:
    """(begin, end) str offsets of each span."""
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    return [(starts[first - 1] + col, starts[last - 1] + len(lines[last - 1])) for first, col, last in spans]


def candidate_spans(text: str) -> dict[str, list[Span]]:
    """Every usable span of a file with LF line breaks, by kind (none when it does not parse)."""
    try:
        found = {"single-line": single_line_spans(text), "multi-line": multi_line_spans(ast.parse(text), text)}
    except (SyntaxError, ValueError, RecursionError, MemoryError, tokenize.TokenError):
        return {kind: [] for kind in KINDS}
    return {
        kind: [
            span
            for span, (begin, end) in zip(spans, _bounds(text, spans))
            if end - begin <= MAX_SPAN_CHARS[kind] and text[begin:end].strip()
        ]
        for kind, spans in found.items()
    }


def cut(text: str, span: Span, kind: str, source: str) -> HeldOutTask:
    """The task for a span: the truth, the trimmed context the model sees, the whole file."""
    ((begin, end),) = _bounds(text, [span])
    before, middle, after = text[:begin], text[begin:end], text[end:]
    prefix = before[-PREFIX_CHARS:]
    if len(prefix) < len(before):
        prefix = prefix[prefix.find("\n") + 1 :] if "\n" in prefix else ""
    suffix = after[:SUFFIX_CHARS]
    if len(suffix) < len(after):
        suffix = suffix[: suffix.rfind("\n") + 1]
    return HeldOutTask(f"{source}:{span[0]}:{kind}", kind, prefix, middle, suffix, before, after)


def build_tasks(documents: Iterable, per_kind: int, seed: int = 0) -> dict[str, list[HeldOutTask]]:
    """`per_kind` tasks of each kind, at most one per file and kind, from a seeded shuffle of the
    documents (anything with `.source` and `.text`); fewer where the files run out.

    Line breaks become LF first, so that line numbers mean the same to ast, tokenize and the
    cutting; the task's file is that normalised text."""
    if per_kind < 0:
        raise ValueError(f"the number of held-out tasks must be >= 0, got {per_kind}")
    docs = sorted(documents, key=lambda d: d.source)
    rng = random.Random(seed)
    rng.shuffle(docs)
    chosen: dict[str, list[HeldOutTask]] = {kind: [] for kind in KINDS}
    for doc in docs:
        if all(len(tasks) >= per_kind for tasks in chosen.values()):
            break
        text = doc.text.replace("\r\n", "\n").replace("\r", "\n")
        for kind, spans in candidate_spans(text).items():
            if spans and len(chosen[kind]) < per_kind:
                chosen[kind].append(cut(text, rng.choice(spans), kind, doc.source))
    return chosen
