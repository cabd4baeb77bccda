"""Run a generated program in a throwaway process with hard limits.

Model output is untrusted and often wrong in ways that loop forever, eat
memory or spew output, so each program gets its own interpreter (isolated
mode, no site-packages), its own empty temporary directory, closed stdin,
rlimits on address space, CPU time, file size and core dumps, and its own
process group, which is killed when the wall-clock limit passes and again
after the program ends (for anything it left running). This is a guard
against accidents, not a security boundary: the program runs as our user.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Literal

GIB = 1024**3
_MESSAGE_CHARS = 200
_OUTPUT_CHARS = 4000

Status = Literal["passed", "failed", "timeout", "error"]


@dataclass(frozen=True)
class ExecutionResult:
    """How a run ended.

    status: "passed" (exit 0), "failed" (the program raised or exited non-zero;
    MemoryError from the memory limit lands here), "timeout" (wall-clock or CPU
    limit), "error" (killed by a signal, output limit, or could not start).
    """

    status: Status
    message: str
    output: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(
    program: str,
    *,
    timeout_s: float = 10.0,
    memory_bytes: int = 2 * GIB,
    output_bytes: int = 1024**2,
) -> ExecutionResult:
    """Run `program` with `python -I -S` and report how it ended; never raises for its faults."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    if memory_bytes <= 0 or output_bytes <= 0:
        raise ValueError(
            f"memory_bytes and output_bytes must be positive, got {memory_bytes!r}, {output_bytes!r}"
        )
    with tempfile.TemporaryDirectory(prefix="codila-exec-") as workdir:
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(program)
        log_path = os.path.join(workdir, "output.txt")
        started = time.monotonic()
        try:
            returncode, timed_out = _run(workdir, log_path, timeout_s, memory_bytes, output_bytes)
        except (OSError, subprocess.SubprocessError) as exc:
            return ExecutionResult("error", f"could not start the program: {exc}")
        seconds = time.monotonic() - started
        with open(log_path, "rb") as f:
            raw = f.read()
    output = raw.decode("utf-8", "replace")[-_OUTPUT_CHARS:]
    return _result(returncode, timed_out, len(raw) >= output_bytes, output, seconds, timeout_s)


def _run(
    workdir: str, log_path: str, timeout_s: float, memory_bytes: int, output_bytes: int
) -> tuple[int, bool]:
    cpu_s = math.ceil(timeout_s) + 1

    def limit() -> None:  # runs in the child between fork and exec
        _set_limit(resource.RLIMIT_AS, memory_bytes)
        _set_limit(resource.RLIMIT_CPU, cpu_s)
        _set_limit(resource.RLIMIT_FSIZE, output_bytes)
        _set_limit(resource.RLIMIT_CORE, 0)

    env = {"PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "program.py"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
            start_new_session=True,
        )
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(process.pid)
            returncode = process.wait()
    return returncode, timed_out


def _set_limit(kind: int, value: int) -> None:
    """Lower a limit to `value`, never above the hard limit we inherited (that would fail)."""
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def _result(
    returncode: int, timed_out: bool, output_full: bool, output: str, seconds: float, timeout_s: float
) -> ExecutionResult:
    if timed_out or returncode == -signal.SIGXCPU:
        return ExecutionResult("timeout", f"timed out after {timeout_s:g} s", output, seconds)
    if returncode == 0:
        return ExecutionResult("passed", "", output, seconds)
    if output_full:
        return ExecutionResult("error", "output limit exceeded", output, seconds)
    if returncode < 0:
        return ExecutionResult("error", f"killed by {_signal_name(-returncode)}", output, seconds)
    lines = [line for line in output.splitlines() if line.strip()]
    message = lines[-1] if lines else f"exit status {returncode}"
    return ExecutionResult("failed", message[:_MESSAGE_CHARS], output, seconds)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
