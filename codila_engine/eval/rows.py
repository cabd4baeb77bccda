"""Measured rows kept on disk, so that long evaluations survive being stopped.

TaskLog: one JSON line per finished task, written as the task finishes; an interrupted run
started again with `resume` keeps those lines and goes on at the first task not done.
RowStore: one JSON file per (benchmark, configuration) of `codila eval table`, reused by
`--resume` when everything that decides the row is unchanged.

Both are keyed by a hash of everything that decides a row (models, tasks, decoding options,
span), so a changed setting is measured again rather than mixed with old rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
from pathlib import Path
from typing import Callable, Sequence


def row_key(**parts) -> str:
    """A short hash of everything that decides a row."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def slug(text: str) -> str:
    """A file name for a benchmark or configuration name."""
    return re.sub(r"[^A-Za-z0-9.=]+", "-", text).strip("-")


def summarize(rows: Sequence[dict]) -> dict:
    """Quality over all tasks; speed as totals (text tokens / iterations and / seconds)."""
    n, tokens = len(rows), sum(r["text_tokens"] for r in rows)
    wall, iterations = sum(r["wall_s"] for r in rows), sum(r["iterations"] for r in rows)
    first = [r["first_draft_s"] for r in rows if r.get("first_draft_s") is not None]

    def rate(key: str) -> float | None:
        return sum(r[key] for r in rows) / n if n and key in rows[0] else None

    return {
        "n": n,
        "syntax_valid": rate("syntax_valid"),
        "exact_match": rate("exact_match"),
        "pass_at_1": rate("passed"),
        "iterations_per_token": iterations / tokens if tokens else None,
        "tokens_per_s": tokens / wall if wall else None,
        "first_draft_s": statistics.median(first) if first else None,
        "text_tokens": tokens,
        "wall_s": round(wall, 3),
    }


class TaskLog:
    """Rows of one run over `task_ids`, in that order, one JSON line each in `path` (its key in
    path.key beside it). With `resume`, the rows already there are kept when the key matches, up
    to the first that is not the next task, not whole (a line cut short by a kill) or not `keep`;
    otherwise the log starts empty. Entering the context writes the log back with just the kept
    rows; `add` appends a finished task's row at once."""

    def __init__(
        self, path: Path, key: str, task_ids: Sequence[str], resume: bool, keep: Callable[[dict], bool] = bool
    ) -> None:
        self.path, self.key, self.key_path = Path(path), key, Path(path).with_suffix(".key")
        self.done: list[dict] = []
        if resume and self.path.is_file() and self.key_path.is_file() and self.key_path.read_text().strip() == key:
            for line, task_id in zip(self.path.read_text(encoding="utf-8").splitlines(), task_ids):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                if row.get("task_id") != task_id or not keep(row):
                    break
                self.done.append(row)
        self.todo = len(task_ids) - len(self.done)

    def __enter__(self) -> TaskLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key_path.write_text(self.key + "\n")
        self.path.write_text("".join(json.dumps(row) + "\n" for row in self.done), encoding="utf-8")
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def add(self, row: dict) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        self.done.append(row)

    def __exit__(self, *exc) -> None:
        self._file.close()


class RowStore:
    """One JSON file per (benchmark, configuration) under <out>/rows/, with the row's key; `get`
    returns a stored row only when its key matches."""

    def __init__(self, out: Path, resume: bool) -> None:
        self.folder, self.resume = out / "rows", resume

    def _path(self, bench: str, name: str) -> Path:
        return self.folder / slug(bench) / f"{slug(name)}.json"

    def get(self, bench: str, name: str, key: str) -> dict | None:
        path = self._path(bench, name)
        if not (self.resume and path.is_file()):
            return None
        stored = json.loads(path.read_text(encoding="utf-8"))
        return stored["result"] if stored.get("key") == key else None

    def put(self, bench: str, name: str, key: str, result: dict, rows: Sequence[dict]) -> None:
        path = self._path(bench, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "result": result, "rows": list(rows)}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
