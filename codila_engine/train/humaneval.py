"""HumanEval-Infilling (Bavarian et al. 2022), read here once, and kept out of training data.

The four official splits ship with the package (codila_engine/data/humaneval_infilling).
Evaluation scores completions on their tasks (eval/humaneval.py), so no training file may
contain one of their problems. The one reader of the files lives here, in the training layer,
because evaluation (a tool) may import training but training may not import the tools.

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
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PACKAGED = resources.files("codila_engine").joinpath("data", "humaneval_infilling")
_DEF = re.compile(r"\bdef\s+([A-Za-z_]\w*)\s*\(")

MIN_LINE_CHARS = 24  # a line this long, next to the entry point's def, marks a copy
MIN_COPY_CHARS = 30  # lines this long count towards a copy without the def
COPY_LINES = 2  # how many such lines of one problem make a copy


@dataclass(frozen=True)
class Task:
    """One infilling problem: the model sees prompt and suffix and writes the middle."""

    task_id: str  # "SingleLineInfilling/HumanEval/12/L3"
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str


def read_tasks(file: Traversable) -> list[Task]:
    """The tasks of one infilling file (*.jsonl.gz), in file order."""
    with file.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return [_task(json.loads(line)) for line in lines if line.strip()]


def _task(record: dict) -> Task:
    return Task(
        task_id=record["task_id"],
        entry_point=record["entry_point"],
        prompt=record["prompt"],
        suffix=record["suffix"],
        canonical_solution=record["canonical_solution"],
        test=record["test"],
    )


def problem_of(task: Task) -> str:
    """`HumanEval/12` for `SingleLineInfilling/HumanEval/12/L3`."""
    return "/".join(task.task_id.split("/")[1:3])


@dataclass(frozen=True)
class Problem:
    task_id: str  # "HumanEval/12"
    entry_point: str
    text: str  # prompt + canonical solution + rest of the function, then the test asserts


def load_problems(folder: str | Path | None = None) -> list[Problem]:
    """The HumanEval problems in the infilling files (*.jsonl.gz) of `folder` (default: the
    packaged splits), one per problem."""
    source = Path(folder) if folder is not None else PACKAGED
    files = [f for f in source.iterdir() if f.name.endswith(".jsonl.gz") and f.is_file()] if source.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no HumanEval infilling files (*.jsonl.gz) in {source}: training refuses to run "
            "without them, since it could not keep HumanEval out; pass --humaneval-dir"
        )
    problems: dict[str, Problem] = {}
    for file in sorted(files, key=lambda f: f.name):
        for task in read_tasks(file):
            problem = problem_of(task)
            if problem not in problems:
                code = task.prompt + task.canonical_solution + task.suffix
                # Test lines count only where they call the solution: the rest is generic.
                tests = [t for t in task.test.splitlines() if "candidate(" in t]
                problems[problem] = Problem(problem, task.entry_point, "\n".join([code, *tests]))
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
