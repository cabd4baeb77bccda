"""A raw LSP client for tests: runs `codila-lsp` over stdio, sends any bytes (malformed ones too)
and records everything the server sends back, answering the server's own requests; and
`shape_problems`, which checks such JSON against the shapes lsp_server/protocol.py declares."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
import types
import typing
from pathlib import Path
from typing import Any


class WireClient:
    def __init__(self, *args: str, answer_edits: bool = True) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lsp_server", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        self.answer_edits = answer_edits  # False: never answer workspace/applyEdit
        self.ids = itertools.count(1)
        self.sent_at: dict[Any, float] = {}  # request id -> when it was sent
        self.methods: dict[Any, str] = {}  # request id -> its method
        self.responses: dict[Any, dict] = {}
        self.answers: dict[Any, int] = {}  # request id -> how many responses came for it
        self.answered_at: dict[Any, float] = {}
        self.null_responses: list[dict] = []  # answers to messages without a usable id
        self.logs: list[dict] = []  # window/logMessage and window/showMessage params, with "method"
        self.drafts: list[dict] = []  # codila/draft params
        self.messages = 0  # messages sent
        self._lock = threading.Lock()
        self._answered = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    # --- sending -----------------------------------------------------------------------------
    def send_bytes(self, body: bytes, header: str = "Content-Length") -> None:
        with self._lock:
            self.proc.stdin.write(f"{header}: {len(body)}\r\n\r\n".encode() + body)
            self.proc.stdin.flush()
            self.messages += 1

    def send(self, message: Any, header: str = "Content-Length") -> None:
        self.send_bytes(json.dumps(message).encode(), header)

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, **({} if params is None else {"params": params})})

    def request(self, method: str, params: Any = None, msg_id: Any = None, header: str = "Content-Length") -> Any:
        """Send a request; returns its id (the response lands in `responses`)."""
        msg_id = next(self.ids) if msg_id is None else msg_id
        self.sent_at[msg_id], self.methods[msg_id] = time.monotonic(), method
        self.send(
            {"jsonrpc": "2.0", "id": msg_id, "method": method, **({} if params is None else {"params": params})}, header
        )
        return msg_id

    def call(self, method: str, params: Any = None, timeout: float = 60) -> dict:
        """A request and its response."""
        msg_id = self.request(method, params)
        missing = self.wait([msg_id], timeout)
        assert not missing, f"no answer to {method} within {timeout} s"
        return self.responses[msg_id]

    def initialize(self, options: dict, capabilities: dict | None = None, timeout: float = 120) -> dict:
        reply = self.call(
            "initialize",
            {"processId": None, "rootUri": None, "capabilities": capabilities or {}, "initializationOptions": options},
            timeout,
        )
        self.notify("initialized", {})
        return reply

    def wait_for_log(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in m["message"] for m in self.logs):
            assert time.monotonic() < deadline, f"no log line with {text!r} within {timeout} s"
            assert self.alive(), "the server exited"
            time.sleep(0.05)

    # --- receiving ---------------------------------------------------------------------------
    def wait(self, ids, timeout: float) -> list:
        """The ids among `ids` still unanswered after at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._answered:
            while True:
                missing = [i for i in ids if i not in self.responses]
                left = deadline - time.monotonic()
                if not missing or left <= 0 or not self.alive():
                    return missing
                self._answered.wait(min(left, 0.2))

    def latency(self, msg_id: Any) -> float:
        return self.answered_at[msg_id] - self.sent_at[msg_id]

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if not line.strip():
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self._handle(json.loads(out.read(length)))

    def _handle(self, message: dict) -> None:
        method = message.get("method")
        if method is None:
            with self._answered:
                if message.get("id") is None:
                    self.null_responses.append(message)
                else:
                    self.responses[message["id"]] = message
                    self.answers[message["id"]] = self.answers.get(message["id"], 0) + 1
                    self.answered_at[message["id"]] = time.monotonic()
                self._answered.notify_all()
        elif "id" in message:  # the server's own request
            if method != "workspace/applyEdit" or self.answer_edits:
                result = {"applied": True} if method == "workspace/applyEdit" else None
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})
        elif method in ("window/logMessage", "window/showMessage"):
            self.logs.append({"method": method, **message["params"]})
        elif method == "codila/draft":
            self.drafts.append(message["params"])

    # --- the process -------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def memory_kib(self) -> tuple[int, int]:
        """(RSS, peak RSS) of the server in KiB."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self, timeout: float = 60) -> int:
        """shutdown, exit; the exit status."""
        if self.alive():
            self.call("shutdown", timeout=timeout)
            self.notify("exit")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def shape_problems(value: Any, shape: Any, where: str = "params") -> list[str]:
    """Where parsed JSON differs from a shape of lsp_server/protocol.py: a TypedDict (no keys it
    does not declare, none it requires missing), a list, tuple or dict of shapes, a union, None,
    Any or a JSON scalar type."""
    origin, args = typing.get_origin(shape), typing.get_args(shape)
    if shape is Any:
        return []
    if shape is None or shape is type(None):
        return [] if value is None else [f"{where}: expected null, got {value!r}"]
    if origin in (typing.Union, types.UnionType):
        options = [shape_problems(value, option, where) for option in args]
        return [] if [] in options else [problem for option in options for problem in option]
    if typing.is_typeddict(shape):
        if not isinstance(value, dict):
            return [f"{where}: expected an object ({shape.__name__}), got {value!r}"]
        fields = typing.get_type_hints(shape)
        problems = [f"{where}.{key}: not in {shape.__name__}" for key in value if key not in fields]
        for key, kind in fields.items():
            if key in value:
                problems += shape_problems(value[key], kind, f"{where}.{key}")
            elif key in shape.__required_keys__:
                problems.append(f"{where}.{key}: missing")
        return problems
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {value!r}"]
        return [problem for i, item in enumerate(value) for problem in shape_problems(item, args[0], f"{where}[{i}]")]
    if origin is tuple:
        if not isinstance(value, list) or len(value) != len(args):
            return [f"{where}: expected an array of {len(args)}, got {value!r}"]
        return [problem for i, item in enumerate(value) for problem in shape_problems(item, args[i], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        return [problem for key, item in value.items() for problem in shape_problems(item, args[1], f"{where}.{key}")]
    accepted = (int, float) if shape is float else shape
    if not isinstance(value, accepted) or (isinstance(value, bool) and shape is not bool):
        return [f"{where}: expected {shape.__name__}, got {value!r}"]
    return []
