"""Hostile generated programs: none may pass, leave a process or a file behind, read the harness's
environment, write outside its temporary directory or reach the network (issue 13)."""

import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from codila_engine.eval import execution
from codila_engine.eval.execution import SandboxUnavailable, allow_unsafe_exec, run_program
from codila_engine.eval.humaneval import Task, build_program

PROBLEM = execution.sandbox_problem()
needs_sandbox = pytest.mark.skipif(PROBLEM is not None, reason=f"no sandbox here: {PROBLEM}")
TASK = Task(
    "t/0",
    "add",
    "def add(a, b):\n",
    "",
    "    return a + b\n",
    "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n",
)
WRONG = "    return 0\n"


def run_fill(completion: str, **limits) -> execution.ExecutionResult:
    return run_program(build_program(TASK, completion), **limits)


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """Runs make their folders under tmp_path/runs, which must be empty again after each test."""
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(runs))
    yield
    assert list(runs.iterdir()) == []


@pytest.fixture
def unsafe(monkeypatch):
    """Unisolated runs, as `--unsafe-exec` on a machine without a sandbox."""
    monkeypatch.setattr(execution, "sandbox_problem", lambda: "bubblewrap (bwrap) is not installed")
    allow_unsafe_exec()
    yield
    allow_unsafe_exec(False)


def alive(tag: str) -> list[int]:
    """Host PIDs of live (not zombie) processes whose command line contains tag."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if tag.encode() in (entry / "cmdline").read_bytes() and (entry / "stat").read_text().split()[2] != "Z":
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it ended while we looked
    return pids


def sleeper(tag: str) -> str:
    """Function-body code that starts `sleep 300` children in new sessions (five by subprocess, one
    by fork, setsid and exec) and prints how many are running."""
    lines = [
        "import os, subprocess, sys",
        f"sleep = [sys.executable, '-c', 'import time; time.sleep(300)  # {tag}']",
        "children = [subprocess.Popen(sleep, start_new_session=True) for _ in range(5)]",
        "if os.fork() == 0:",
        "    os.setsid()",
        "    os.execv(sys.executable, sleep)",
        "print('running', sum(child.poll() is None for child in children), flush=True)",
    ]
    return "".join(f"    {line}\n" for line in lines)


# --- what passes and what does not ---------------------------------------------------------------
@needs_sandbox
def test_correct_completion_passes_and_wrong_one_fails():
    assert run_fill(TASK.canonical_solution).passed
    result = run_fill(WRONG)
    assert (result.status, result.message) == ("failed", "AssertionError")


CHEATS = {
    "os._exit(0)": "    import os; os._exit(0)\n",
    "sys.exit(0)": "    import sys; sys.exit(0)\n",
    "raise SystemExit": "    raise SystemExit\n",
    "SystemExit from a check rebinding": "    return 0\ncheck = lambda c: None\nraise SystemExit(0)\n",
    "check patched before its definition": "    return 0\nimport builtins\nbuiltins.check = lambda c: None\n",
    "AssertionError patched": (
        "    import builtins; builtins.AssertionError = type('Quiet', (Exception,), {})\n    return 0\n"
    ),
    "assert swallowed by excepthook": "    import sys; sys.excepthook = lambda *a: None\n    return 0\n",
    "atexit exits 0": "    import atexit, os; atexit.register(os._exit, 0)\n    return 0\n",
    "fake nonce printed": (
        "    import secrets, sys; print(secrets.token_hex(32)); sys.stdout.flush(); import os; os._exit(0)\n"
    ),
    "all descriptors written": "    import os, secrets\n    for fd in range(1024):\n        try:\n"
    "            os.write(fd, secrets.token_bytes(32))\n        except OSError:\n"
    "            pass\n    return 0\n",
    "descriptors written, then exit 0": "    import os\n    for fd in range(3, 1024):\n        try:\n"
    "            os.write(fd, bytes(32))\n        except OSError:\n"
    "            pass\n    os._exit(0)\n",
}


@needs_sandbox
@pytest.mark.parametrize("cheat", list(CHEATS))
def test_cheats_do_not_pass(cheat):
    result = run_fill(CHEATS[cheat])
    assert result.status == "failed", (result.status, result.message, result.output)


@pytest.mark.parametrize("cheat", ["os._exit(0)", "sys.exit(0)", "atexit exits 0", "descriptors written, then exit 0"])
def test_cheats_do_not_pass_unsafe_either(unsafe, cheat):
    assert run_fill(CHEATS[cheat]).status == "failed"
    assert run_fill(TASK.canonical_solution).passed


@needs_sandbox
def test_garbage_before_the_marker_fails_a_correct_program():
    """Writing to the marker pipe cannot help; it only spoils the program's own pass."""
    spoil = (
        "    import os\n    for fd in range(3, 64):\n        try:\n            os.write(fd, b'x')\n"
        "        except OSError:\n            pass\n" + TASK.canonical_solution
    )
    assert run_fill(spoil).status == "failed"


# --- processes ----------------------------------------------------------------------------------
@needs_sandbox
def test_new_session_children_are_gone_when_the_program_ends():
    tag = f"codila-sandbox-{secrets.token_hex(8)}"
    result = run_fill(sleeper(tag) + TASK.canonical_solution)
    assert result.passed and "running 5" in result.output, result.output
    assert alive(tag) == []


@needs_sandbox
def test_infinite_loop_times_out_and_every_child_dies():
    tag = f"codila-sandbox-{secrets.token_hex(8)}"
    started = time.monotonic()
    result = run_fill(sleeper(tag) + "    while True:\n        pass\n", timeout_s=1)
    assert (result.status, result.message) == ("timeout", "timed out after 1 s")
    assert time.monotonic() - started < 3 and "running 5" in result.output
    assert alive(tag) == []


@needs_sandbox
@pytest.mark.skipif(os.geteuid() == 0, reason="the kernel does not apply RLIMIT_NPROC to root")
def test_process_count_is_limited():
    program = (
        "import os, time\nn = 0\ntry:\n    while n < 200:\n        if os.fork() == 0:\n"
        "            time.sleep(5)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)\n"
    )
    result = run_program(program, max_processes=16)
    assert result.passed and int(result.output.split()[-1]) < 16


# --- files, environment, network ---------------------------------------------------------------
@needs_sandbox
def test_writes_outside_the_temp_dir_do_not_happen(tmp_path):
    tag = secrets.token_hex(8)
    targets = [
        Path.cwd() / f"written-{tag}",
        Path.home() / f"written-{tag}",
        tmp_path / f"written-{tag}",
        Path(f"/etc/written-{tag}"),
        Path(f"/usr/written-{tag}"),
        Path(sys.executable).parent / f"written-{tag}",
    ]
    attempts = "".join(
        f"    try:\n        os.makedirs(os.path.dirname({str(t)!r}), exist_ok=True)\n"
        f"        open({str(t)!r}, 'w').write('x')\n        print('wrote', {str(t)!r})\n"
        "    except OSError as exc:\n        print('refused', type(exc).__name__)\n"
        for t in targets
    )
    result = run_fill("    import os\n" + attempts + "    open('here.txt', 'w').write('x')\n" + WRONG)
    assert result.status == "failed" and "refused" in result.output
    assert [t for t in targets if t.exists()] == []  # tmp_path's "write" went to the sandbox's own /tmp


@needs_sandbox
def test_the_harness_environment_cannot_be_read(monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("CODILA_TEST_SECRET", secret)
    snoop = (
        "    import os\n"
        f"    paths = ['/proc/%d/environ' % os.getppid(), '/proc/{os.getpid()}/environ',\n"
        f"             '/proc/{os.getppid()}/environ']\n"
        "    paths += ['/proc/%s/environ' % p for p in os.listdir('/proc') if p.isdigit()]\n"
        "    for path in paths:\n"
        "        try:\n"
        "            print(path, open(path, 'rb').read())\n"
        "        except OSError as exc:\n"
        "            print(path, type(exc).__name__)\n"
        "    print(dict(os.environ))\n" + WRONG
    )
    result = run_fill(snoop)
    assert result.status == "failed" and "/environ" in result.output
    assert secret not in result.output and "CODILA_TEST_SECRET" not in result.output


@needs_sandbox
def test_a_local_listener_cannot_be_reached():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        dial = (
            "    import socket\n    try:\n"
            f"        socket.create_connection(('127.0.0.1', {port}), timeout=2)\n        print('connected')\n"
            "    except OSError as exc:\n        print('refused', type(exc).__name__)\n" + WRONG
        )
        result = run_fill(dial)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.status == "failed" and "refused" in result.output and "connected" not in result.output


# --- limits -------------------------------------------------------------------------------------
@needs_sandbox
def test_memory_bomb_hits_the_limit():
    started = time.monotonic()
    result = run_fill("    x = []\n    while True:\n        x.append(' ' * 10**6)\n", memory_bytes=256 * 1024**2)
    assert (result.status, result.message) == ("failed", "MemoryError")
    assert time.monotonic() - started < 5


@needs_sandbox
def test_tmp_is_size_limited():
    result = run_fill(
        "    with open('/tmp/fill', 'wb') as f:\n        while True:\n            f.write(bytes(1 << 20))\n",
        output_bytes=256 * 1024**2,
        memory_bytes=512 * 1024**2,
    )
    assert result.status == "failed" and "No space left on device" in result.message


@needs_sandbox
def test_output_flood_is_cut_off():
    result = run_fill("    while True:\n        print('x' * 1000)\n", output_bytes=64 * 1024)
    assert (result.status, result.message) == ("error", "output limit exceeded")


# --- refusal and --unsafe-exec --------------------------------------------------------------------
def test_missing_bwrap_is_detected(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert execution.sandbox_problem.__wrapped__() == "bubblewrap (bwrap) is not installed"


def test_refused_namespaces_are_detected(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert execution.sandbox_problem.__wrapped__() == (
        "bwrap cannot create the sandbox (bwrap: No permissions to create new namespace)"
    )


def test_without_a_sandbox_untrusted_code_is_refused(monkeypatch):
    monkeypatch.setattr(execution, "sandbox_problem", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxUnavailable) as refused:
        run_program("print('never runs')\n")
    message = str(refused.value)
    assert "\n" not in message and "--unsafe-exec" in message and "bwrap" in message


def test_cli_refuses_in_one_line_and_unsafe_exec_runs_with_a_warning(monkeypatch, capsys):
    from codila_engine.cli import main
    from codila_engine.eval import client, run

    monkeypatch.setattr(execution, "sandbox_problem", lambda: "bubblewrap (bwrap) is not installed")
    seen = []

    def fake_evaluate(*args, **kwargs):
        seen.append(execution._unsafe_allowed)
        raise client.ServerError("stop here")

    monkeypatch.setattr(run, "evaluate", fake_evaluate)
    assert main(["eval", "humaneval-infilling", "--limit", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert seen == [] and len(err.strip().splitlines()) == 1 and "--unsafe-exec" in err
    try:
        assert main(["eval", "humaneval-infilling", "--limit", "1", "--no-progress", "--unsafe-exec"]) == 1
    finally:
        allow_unsafe_exec(False)
    assert seen == [True] and "warning" in capsys.readouterr().err
