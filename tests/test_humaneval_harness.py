import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from codila_engine.eval.execution import run_program
from codila_engine.eval.humaneval import SPLITS, Task, build_program, load_split, parses
from test_sandbox import alive

FULL = os.environ.get("CODILA_FULL_HARNESS") == "1"
SPLIT_SIZES = {"single-line": 1033, "multi-line": 5815, "random-span": 1640, "random-span-light": 164}


pytestmark = pytest.mark.usefixtures("sandbox_or_unsafe")


@pytest.fixture(scope="module")
def splits():
    return {name: load_split(name) for name in SPLITS}


def test_split_sizes_and_fields(splits):
    assert {name: len(tasks) for name, tasks in splits.items()} == SPLIT_SIZES
    first = splits["single-line"][0]
    assert first.task_id == "SingleLineInfilling/HumanEval/0/L0"
    assert first.entry_point == "has_close_elements"
    assert first.canonical_solution == "    for idx, elem in enumerate(numbers):\n"


def test_unknown_split_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown HumanEval-Infilling split 'single'.*'multi-line'"):
        load_split("single")


def test_build_program_layout():
    task = Task("t/0", "f", "def f():\n", "    return x\n", "    x = 1\n", "def check(c):\n    assert c() == 1")
    assert build_program(task, "    x = 1\n") == (
        "def f():\n    x = 1\n    return x\n\ndef check(c):\n    assert c() == 1\ncheck(f)\n"
    )


def test_parses():
    assert parses("def f():\n    return 1\n")
    assert not parses("def f(:\n")
    assert not parses("x = 1\x00")
    assert not parses("(" * 300 + ")" * 300)


@pytest.mark.parametrize("name", list(SPLITS))
def test_canonical_solutions_pass(splits, name):
    """Every canonical fill passes; set CODILA_FULL_HARNESS=1 to run all tasks, not the first 20."""
    tasks = splits[name] if FULL else splits[name][:20]
    with ThreadPoolExecutor(os.cpu_count() if FULL else 1) as pool:
        results = list(pool.map(lambda t: run_program(build_program(t, t.canonical_solution)), tasks))
    failures = [(t.task_id, r.status, r.message) for t, r in zip(tasks, results) if not r.passed]
    assert failures == []


def test_wrong_completion_fails(splits):
    task = splits["single-line"][0]
    wrong = task.canonical_solution.replace("enumerate(numbers)", "enumerate(numbers[:1])")
    program = build_program(task, wrong)
    assert parses(program)
    result = run_program(program)
    assert (result.status, result.passed, result.message) == ("failed", False, "AssertionError")


def test_unparsable_completion_fails(splits):
    task = splits["multi-line"][0]
    result = run_program(build_program(task, "    for (\n"))
    assert result.status == "failed" and "SyntaxError" in result.message


def test_infinite_loop_times_out_and_its_children_die():
    tag = f"codila-harness-{os.getpid()}-{time.monotonic_ns()}"
    program = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)  # {tag}'])\n"
        "while True:\n"
        "    pass\n"
    )
    started = time.monotonic()
    result = run_program(program, timeout_s=1)
    assert time.monotonic() - started < 3
    assert (result.status, result.message) == ("timeout", "timed out after 1 s")
    deadline = time.monotonic() + 2  # unisolated runs: the killed group may take a moment to go
    while alive(tag) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert alive(tag) == []


def test_huge_allocation_fails_cleanly():
    result = run_program("x = bytearray(3 * 1024**3)\n")
    assert (result.status, result.message) == ("failed", "MemoryError")


def test_growing_memory_hits_the_limit():
    started = time.monotonic()
    result = run_program("x = []\nwhile True:\n    x.append(' ' * 10**6)\n", memory_bytes=256 * 1024**2)
    assert (result.status, result.message) == ("failed", "MemoryError")
    assert time.monotonic() - started < 5


def test_stdin_is_closed():
    result = run_program("input()\n")
    assert result.status == "failed" and result.message.startswith("EOFError")


def test_output_flood_is_cut_off():
    result = run_program("while True:\n    print('x' * 1000)\n", output_bytes=64 * 1024)
    assert (result.status, result.message) == ("error", "output limit exceeded")
    assert len(result.output) <= 4000


def test_killed_by_signal_is_an_error():
    result = run_program("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    assert (result.status, result.message) == ("error", "killed by SIGSEGV")


def test_runs_isolated_in_a_fresh_directory_that_is_removed():
    program = "import os, sys\nprint(sorted(os.listdir('.')))\nprint(sys.flags.isolated)\nopen('left.txt', 'w')\n"
    first, second = run_program(program), run_program(program)
    assert first.passed and first.output.splitlines() == ["['program.py']", "1"]
    assert second.output == first.output  # left.txt did not survive the first run
    assert run_program("import pytest\n").status == "failed"  # no site-packages


def test_bad_limits_are_rejected():
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        run_program("pass", timeout_s=0)
    with pytest.raises(ValueError, match="memory_bytes, output_bytes and max_processes must be positive"):
        run_program("pass", memory_bytes=0)
    with pytest.raises(ValueError, match="max_processes must be positive"):
        run_program("pass", max_processes=0)
