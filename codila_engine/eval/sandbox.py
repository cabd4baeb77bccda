"""The bubblewrap (`bwrap`) command line that isolates one generated program.

The program sees a read-only system (/usr and the top-level links or folders into it, a few
files of /etc, the Python installation), a fresh /proc of its own PID namespace, a minimal
read-only /dev, and a private size-limited tmpfs at /tmp that is its working directory and
vanishes with the sandbox. It gets new user, PID, network (loopback only), IPC, UTS and, where
the kernel allows, cgroup namespaces, no capabilities, no further user namespaces, a new session
and an empty environment but for ENV; every process in it dies with the namespace's init.
"""

from __future__ import annotations

import os
import sys

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
WORKDIR = "/tmp"
_SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf")


def interpreter() -> str:
    """The real Python binary behind sys.executable (a virtual environment's link is not mounted)."""
    return os.path.realpath(sys.executable)


def bwrap_argv(bwrap: str, program_path: str, info_fd: int, block_fd: int, tmp_bytes: int) -> list[str]:
    """bwrap and its options up to `--`; the command to run inside follows. bwrap writes its
    init's PID to info_fd and starts the command once block_fd has data."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--info-fd",
        str(info_fd),
        "--block-fd",
        str(block_fd),
    ]
    for key, value in ENV.items():
        argv += ["--setenv", key, value]
    argv += _system_mounts()
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        WORKDIR,
        "--ro-bind",
        program_path,
        f"{WORKDIR}/program.py",
        "--chdir",
        WORKDIR,
        "--remount-ro",
        "/",
    ]
    return argv


def _system_mounts() -> list[str]:
    """Read-only binds of the system folders (symlinks stay symlinks), /etc's loader and name
    files, and every folder the interpreter lives in that those do not cover."""
    argv: list[str] = []
    bound: list[str] = []
    for name in _SYSTEM:
        path = "/" + name
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
            bound.append(path)
    for name in _ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in (sys.base_prefix, sys.base_exec_prefix, interpreter()):
        path = os.path.realpath(path)
        if not any(path == b or path.startswith(b + "/") for b in bound):
            argv += ["--ro-bind", path, path]
            bound.append(path)
    return argv
