"""A raw LSP client for tests: runs `codila-lsp` over stdio, sends any bytes (malformed ones too)
and records everything the server sends back, answering the server's own requests."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
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
