"""Run a generated program with its tests, isolated, and decide whether the tests ran to their end.

Model output is untrusted: it may loop, eat memory, spew output, exit early to look like a
pass, or try to reach files, processes and the network. Each program runs in a bubblewrap
sandbox (sandbox.py) under rlimits on address space, CPU time, file size, core dumps and (in
the sandbox's own user namespace) process count, with a wall-clock limit, closed stdin and its
output in a capped file.

A program passes only if a harness around it writes an end marker after the program's last
statement (the task's `check(...)`) returns. The marker is a random per-run nonce that the
parent sends over one inherited pipe and reads back from another; it is never in argv, the
environment, a file or the output, so exiting with status 0, raising SystemExit, atexit
handlers or printing text cannot produce it. What remains possible is a program written
against this harness: one that reads the nonce out of the harness's stack frame or memory.

Where bwrap is missing or cannot create namespaces, run_program refuses (SandboxUnavailable)
unless allow_unsafe_exec() was called (`--unsafe-exec`); then programs run as plain processes
of the calling user in their own process group, killed at the end, with the same limits and
end marker but no isolation.
"""

from __future__ import annotations

import functools
import hmac
import json
import math
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Literal

from codila_engine.eval import sandbox

GIB = 1024**3
TMP_BYTES = 64 * 1024**2  # the sandbox's private /tmp
_MESSAGE_CHARS = 200
_OUTPUT_CHARS = 4000
_NONCE_BYTES = 32
_unsafe_allowed = False

Status = Literal["passed", "failed", "timeout", "error"]

# Runs as `python -I -S -B -c HARNESS NONCE_FD END_FD PROCESSES` in the program's directory.
HARNESS = """\
import os, resource, sys, types
def _harness(nonce_fd, end_fd, processes):
    nonce = os.read(nonce_fd, 64)
    os.close(nonce_fd)
    os.set_inheritable(end_fd, False)
    if processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    with open("program.py", "rb") as f:
        code = compile(f.read(), "program.py", "exec")
    main = types.ModuleType("__main__")
    main.__file__ = "program.py"
    sys.modules["__main__"] = main
    sys.argv = ["program.py"]
    exec(code, main.__dict__)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(end_fd, nonce)
    os._exit(0)
_harness(*map(int, sys.argv[1:]))
"""


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    memory_bytes: int
    output_bytes: int
    max_processes: int


class SandboxUnavailable(RuntimeError):
    """Generated code cannot be isolated on this machine and unsafe execution was not allowed."""


@dataclass(frozen=True)
class ExecutionResult:
    """How a run ended.

    status: "passed" (the end marker arrived: the program ran to its last statement, and exited
    0), "failed" (the program raised, or exited before its end, with any status; MemoryError
    from the memory limit lands here), "timeout" (wall-clock or CPU limit), "error" (killed by
    a signal, output limit, or could not start).
    """

    status: Status
    message: str
    output: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def allow_unsafe_exec(allowed: bool = True) -> None:
    """Let run_program fall back to unisolated processes where the sandbox is unavailable."""
    global _unsafe_allowed
    _unsafe_allowed = allowed


def refusal(problem: str) -> str:
    """The one-line error for a machine where generated code cannot be isolated."""
    return (
        f"refusing to run generated code without isolation: {problem}; install bubblewrap 0.8 or newer "
        f"(apt-get install bubblewrap) or pass --unsafe-exec to run it as plain processes of your user"
    )


@functools.cache
def sandbox_problem() -> str | None:
    """Why programs cannot be sandboxed here (None: they can); a trial run, done once per process."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    trial = _execute("pass", _Limits(30.0, 2 * GIB, 1024**2, 64), sandboxed=True)
    if trial.passed:
        return None
    lines = [line for line in trial.output.splitlines() if line.strip()]
    return f"bwrap cannot create the sandbox ({lines[-1] if lines else trial.message})"


def run_program(
    program: str,
    *,
    timeout_s: float = 10.0,
    memory_bytes: int = 2 * GIB,
    output_bytes: int = 1024**2,
    max_processes: int = 64,
) -> ExecutionResult:
    """Run `program` (Python source) in the sandbox and report how it ended; never raises for
    its faults. Raises SandboxUnavailable where there is no sandbox and unsafe runs are not allowed.

    max_processes counts processes and threads inside the sandbox; the kernel does not apply it
    to root, nor is it set in unsafe runs (there it would count all of the user's processes)."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    if memory_bytes <= 0 or output_bytes <= 0 or max_processes <= 0:
        raise ValueError(
            "memory_bytes, output_bytes and max_processes must be positive, got "
            f"{memory_bytes!r}, {output_bytes!r}, {max_processes!r}"
        )
    problem = sandbox_problem()
    if problem is not None and not _unsafe_allowed:
        raise SandboxUnavailable(refusal(problem))
    limits = _Limits(timeout_s, memory_bytes, output_bytes, max_processes)
    return _execute(program, limits, sandboxed=problem is None)


def _execute(program: str, limits: _Limits, sandboxed: bool) -> ExecutionResult:
    with tempfile.TemporaryDirectory(prefix="codila-exec-") as folder:
        workdir = os.path.join(folder, "work")  # the unsafe runs' working directory; the log stays outside
        os.mkdir(workdir)
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(program)
        log_path = os.path.join(folder, "output.txt")
        nonce = secrets.token_bytes(_NONCE_BYTES)
        started = time.monotonic()
        try:
            with open(log_path, "wb") as log:
                returncode, timed_out, marker = _run(workdir, log, nonce, limits, sandboxed)
        except (OSError, subprocess.SubprocessError) as exc:
            return ExecutionResult("error", f"could not start the program: {exc}")
        seconds = time.monotonic() - started
        with open(log_path, "rb") as f:
            raw = f.read()
    output = raw.decode("utf-8", "replace")[-_OUTPUT_CHARS:]
    signum = _signal_of(returncode, sandboxed)
    ended = returncode == 0 and hmac.compare_digest(marker, nonce)
    return _result(
        returncode, signum, ended, timed_out, len(raw) >= limits.output_bytes, output, seconds, limits.timeout_s
    )


def _run(workdir: str, log, nonce: bytes, limits: _Limits, sandboxed: bool) -> tuple[int, bool, bytes]:
    """Start the harness, wait for it under the wall-clock limit, end every process it started;
    returns the exit status, whether the time ran out, and what arrived on the marker pipe."""
    cpu_s = math.ceil(limits.timeout_s) + 1
    bwrap = shutil.which("bwrap") if sandboxed else None
    if sandboxed and bwrap is None:  # found by sandbox_problem, gone since: the start fails like any other
        raise FileNotFoundError("bubblewrap (bwrap) is no longer on PATH")

    def limit() -> None:  # runs in the child between fork and exec; bwrap and all inside inherit them
        _set_limit(resource.RLIMIT_AS, limits.memory_bytes)
        _set_limit(resource.RLIMIT_CPU, cpu_s)
        _set_limit(resource.RLIMIT_FSIZE, limits.output_bytes)
        _set_limit(resource.RLIMIT_CORE, 0)

    nonce_r, nonce_w = os.pipe()
    end_r, end_w = os.pipe()
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    processes = limits.max_processes if sandboxed else 0
    harness = ["-I", "-S", "-B", "-c", HARNESS, str(nonce_r), str(end_w), str(processes)]
    if bwrap is not None:  # sandboxed
        program = os.path.join(workdir, "program.py")
        argv = [
            *sandbox.bwrap_argv(bwrap, program, info_w, block_r, TMP_BYTES),
            "--",
            sandbox.interpreter(),
            *harness,
        ]
    else:
        argv = [sys.executable, *harness]
    init = None
    try:
        try:
            os.write(nonce_w, nonce)
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=sandbox.ENV | {"HOME": workdir, "TMPDIR": workdir},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,
                start_new_session=True,
                pass_fds=(nonce_r, end_w, info_w, block_r) if sandboxed else (nonce_r, end_w),
            )
        finally:  # the parent's copies of the child's ends: a bwrap that fails must read as EOF
            for fd in (nonce_r, nonce_w, end_w, info_w, block_r):
                os.close(fd)
        timed_out = False
        try:
            init = _sandbox_init(info_r, block_w) if sandboxed else None
            process.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _stop(process, init)
        return process.returncode, timed_out, _read_marker(end_r)
    finally:
        for fd in (end_r, info_r, block_w) if init is None else (end_r, info_r, block_w, init):
            os.close(fd)


def _sandbox_init(info_r: int, block_w: int, wait_s: float = 30.0) -> int | None:
    """A pidfd on the sandbox's init (PID 1 of its namespace), opened while bwrap still holds the
    program back (--block-fd), so that PID cannot have been reused yet; then the program starts.
    None if bwrap failed before saying which process that is."""
    deadline = time.monotonic() + wait_s
    data = b""
    while _readable(info_r, deadline - time.monotonic()):
        chunk = os.read(info_r, 4096)
        if not chunk:
            return None
        data += chunk
        try:
            pid = int(json.loads(data)["child-pid"])
        except ValueError:
            continue  # not all of it yet
        init = os.pidfd_open(pid)
        os.write(block_w, b"go")
        return init
    return None


def _stop(process: subprocess.Popen, init: int | None) -> None:
    """End the run. Sandboxed: kill the PID namespace's init, which takes every process in the
    namespace with it, and wait until it is gone. Unsafe (or bwrap failed): kill the process group."""
    if init is None:
        _kill_group(process.pid)
    else:
        try:
            signal.pidfd_send_signal(init, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone
        _readable(init, 10.0)  # a pidfd reads as readable once its process has exited
    process.wait()


def _readable(fd: int, seconds: float) -> bool:
    """Wait up to `seconds` for fd to become readable (or reach EOF)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(seconds, 0) * 1000))


def _read_marker(end_r: int) -> bytes:
    """What the harness wrote on the marker pipe, without waiting for a writer that is still alive."""
    os.set_blocking(end_r, False)
    try:
        return os.read(end_r, _NONCE_BYTES + 1)
    except BlockingIOError:
        return b""


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


def _signal_of(returncode: int, sandboxed: bool) -> int | None:
    """The signal that ended the program: Popen reports -N; bwrap passes it on as 128 + N."""
    if returncode < 0:
        return -returncode
    if sandboxed and 128 < returncode < 128 + signal.NSIG:
        return returncode - 128
    return None


def _result(
    returncode: int,
    signum: int | None,
    ended: bool,
    timed_out: bool,
    output_full: bool,
    output: str,
    seconds: float,
    timeout_s: float,
) -> ExecutionResult:
    if timed_out or signum == signal.SIGXCPU:
        return ExecutionResult("timeout", f"timed out after {timeout_s:g} s", output, seconds)
    if ended:
        return ExecutionResult("passed", "", output, seconds)
    if output_full:
        return ExecutionResult("error", "output limit exceeded", output, seconds)
    if signum is not None:
        return ExecutionResult("error", f"killed by {_signal_name(signum)}", output, seconds)
    if returncode == 0:
        return ExecutionResult("failed", "exited before its tests finished (no end marker)", output, seconds)
    lines = [line for line in output.splitlines() if line.strip()]
    message = lines[-1] if lines else f"exit status {returncode}"
    return ExecutionResult("failed", message[:_MESSAGE_CHARS], output, seconds)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
