"""Keep HumanEval out of training data: we evaluate on it, so no training file may contain it.

A file is contaminated by a problem when it defines the problem's entry point and contains one
of the problem's distinctive lines (docstring, solution or test), or when it contains several
long distinctive lines even under another function name (a copied solution). Lines are
compared after collapsing whitespace, so re-indented copies are caught too; lines shared by
two or more problems (imports, `return result`) are not distinctive and never count.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent.parent / "data" / "humaneval_infilling"
_SHARED = Path("/work/shared/data/humaneval-infilling")
_DEF = re.compile(r"\bdef\s+([A-Za-z_]\w*)\s*\(")

MIN_LINE_CHARS = 24  # a line this long, next to the entry point's def, marks a copy
MIN_COPY_CHARS = 30  # lines this long count towards a copy without the def
COPY_LINES = 2  # how many such lines of one problem make a copy


@dataclass(frozen=True)
class Problem:
    task_id: str  # "HumanEval/12"
    entry_point: str
    text: str  # prompt + canonical solution + rest of the function, then the test asserts


def default_humaneval_dir() -> Path:
    """The copy shipped in the package, else the shared one."""
    return _PACKAGED if _PACKAGED.is_dir() else _SHARED


def load_problems(folder: str | Path | None = None) -> list[Problem]:
    """The HumanEval problems in the infilling files (*.jsonl.gz) of `folder`, one per task."""
    folder = Path(folder) if folder is not None else default_humaneval_dir()
    files = sorted(folder.glob("*.jsonl.gz")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no HumanEval infilling files (*.jsonl.gz) in {folder}: training refuses to run "
            "without them, since it could not keep HumanEval out; pass --humaneval-dir"
        )
    problems: dict[str, Problem] = {}
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                task = "/".join(row["task_id"].split("/")[1:3])  # "SingleLine.../HumanEval/0/L0"
                if task not in problems:
                    code = row["prompt"] + row["canonical_solution"] + row["suffix"]
                    # Test lines count only where they call the solution: the rest is generic.
                    tests = [t for t in row.get("test", "").splitlines() if "candidate(" in t]
                    problems[task] = Problem(task, row["entry_point"], "\n".join([code, *tests]))
    return list(problems.values())


def normalize_line(line: str) -> str:
    return " ".join(line.split())


class ContaminationIndex:
    """Answers 'which HumanEval problem, if any, does this text contain?'."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("no HumanEval problems to guard against")
        owners: dict[str, set[int]] = defaultdict(set)
        for i, p in enumerate(problems):
            for line in p.text.splitlines():
                norm = normalize_line(line)
                if len(norm) >= MIN_LINE_CHARS:
                    owners[norm].add(i)
        self._problems = problems
        self._lines = {line: next(iter(ids)) for line, ids in owners.items() if len(ids) == 1}
        self._by_name: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(problems):
            self._by_name[p.entry_point].append(i)

    def match(self, text: str) -> str | None:
        """Task id of a HumanEval problem found in `text`, or None."""
        hits: dict[int, list[str]] = defaultdict(list)
        for line in text.splitlines():
            norm = normalize_line(line)
            problem = self._lines.get(norm)
            if problem is not None:
                hits[problem].append(norm)
        if not hits:
            return None
        defined = {i for name in _DEF.findall(text) for i in self._by_name.get(name, ())}
        for i, lines in hits.items():
            own_def = f"def {self._problems[i].entry_point}("
            if i in defined and any(not line.startswith(own_def) for line in lines):
                return self._problems[i].task_id
            if len({line for line in lines if len(line) >= MIN_COPY_CHARS}) >= COPY_LINES:
                return self._problems[i].task_id
        return None
