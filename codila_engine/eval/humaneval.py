"""HumanEval-Infilling (Bavarian et al. 2022): the four official splits, shipped with the package.

A task hides a span of a HumanEval solution; a completion fills it and the
unit tests decide whether the filled program is right. The files are read by
train/humaneval.py, which training shares to keep these problems out of its data.
"""

from __future__ import annotations

import ast
import random

from codila_engine.train.humaneval import PACKAGED, Task, problem_of, read_tasks

SPLITS = {
    "single-line": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi-line": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random-span": "HumanEval-RandomSpanInfilling.jsonl.gz",
    "random-span-light": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
}


def load_split(name: str) -> list[Task]:
    """All tasks of a split, in file order (which is stable, so subsets are reproducible)."""
    if name not in SPLITS:
        raise ValueError(f"unknown HumanEval-Infilling split {name!r}; choose one of {sorted(SPLITS)}")
    return read_tasks(PACKAGED.joinpath(SPLITS[name]))


def sample_tasks(tasks: list[Task], limit: int | None, seed: int = 0) -> list[Task]:
    """`limit` tasks spread over all problems: problems in a seeded order, one task each (seeded),
    then a second round, and so on; all tasks, in file order, when `limit` is None."""
    if limit is None or limit >= len(tasks):
        return list(tasks)
    g = random.Random(seed)
    by_problem: dict[str, list[Task]] = {}
    for task in tasks:
        by_problem.setdefault(problem_of(task), []).append(task)
    for group in by_problem.values():
        g.shuffle(group)
    order = sorted(by_problem)
    g.shuffle(order)
    picked: list[Task] = []
    for round_ in range(max(map(len, by_problem.values()))):
        picked += [by_problem[p][round_] for p in order if round_ < len(by_problem[p])]
        if len(picked) >= limit:
            break
    return picked[:limit]


def build_program(task: Task, completion: str) -> str:
    """The filled-in solution followed by the task's tests, as the official harness runs it."""
    return task.prompt + completion + task.suffix + "\n" + task.test + "\n" + f"check({task.entry_point})\n"


def parses(program: str) -> bool:
    """Whether a program is valid Python, so unparsable fills are counted without running them."""
    try:
        ast.parse(program)
    # ValueError: NUL bytes; RecursionError/MemoryError: absurdly deep nesting.
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True
