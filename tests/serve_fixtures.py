"""One team server (`codila serve`, local Ray on 127.0.0.1, the tiny pair, two replicas) shared by
the test modules that need it: started by the first, stopped (SIGTERM, checked clean) after the last."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLIENTS = [f"client{n:02d}" for n in range(1, 21)]
NAMES = ["alice", "bob", "carol", "editor", *CLIENTS]
MAX_CLIENT_REQUESTS = 3
MAX_REQUEST_BYTES = 64 * 1024
# failed authentications per address within a minute: above the tests' own failures from 127.0.0.1
# (8 in a whole run: test_serve's 6, the refused language server's 2), so only the lockout test (from
# 127.0.0.2) is locked out
MAX_AUTH_FAILURES = 16


def token_of(name: str) -> str:
    return f"{name}-token-0123456789abcdef"


@dataclass
class TeamServer:
    url: str
    port: int
    proc: subprocess.Popen
    log: Path
    token_file: Path
    stopped: dict = field(default_factory=dict)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout=30,
        source: str | None = None,
    ):
        """(status, headers, body) of one raw request (from the address `source`, a loopback one)."""
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=timeout, source_address=(source, 0) if source else None
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def info(self, name: str = "alice") -> dict:
        status, _, body = self.call("GET", "/v1/info", headers={"Authorization": f"Bearer {token_of(name)}"})
        assert status == 200, body
        return json.loads(body)

    def wait_replaced(self, known: set[int], timeout: float = 180) -> tuple[float, set[int]]:
        """Seconds until a replica process not in `known` (those before a kill) serves decodes and
        Serve reports every replica running (the killed replica was replaced), and the new pids."""
        import threading

        from codila_engine.config import DecodeConfig
        from codila_engine.serve.client import RemoteEngine

        t0 = time.monotonic()
        engines = [RemoteEngine(self.url, token_of(name)) for name in CLIENTS[-4:]]
        while time.monotonic() - t0 < timeout:
            seen: list[int] = []

            def one(engine: RemoteEngine) -> None:
                try:
                    decoding = engine.decode("x = 1\n", "", DecodeConfig(max_new_tokens=4))
                    decoding.run()
                    seen.append(decoding.pid)
                except Exception:  # noqa: BLE001 - a replica still starting: try again
                    pass

            threads = [threading.Thread(target=one, args=(engine,)) for engine in engines]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            if set(seen) - known and self.info()["replicas"] == {"RUNNING": 2}:
                return time.monotonic() - t0, set(seen) - known
            time.sleep(0.5)
        raise AssertionError(f"no new replica after {timeout}s: {self.info()['replicas']}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SERVER: TeamServer | None = None
PORT = _free_port()  # chosen at import: language servers' environments can name the URL up front
URL = f"http://127.0.0.1:{PORT}"


def start(tiny_pair) -> TeamServer:
    folder = Path(tempfile.mkdtemp(prefix="codila-serve-"))
    tokens = folder / "tokens"
    tokens.write_text("# name token\n" + "".join(f"{n} {token_of(n)}\n" for n in NAMES))
    tokens.chmod(0o600)
    log = folder / "serve.log"
    port = PORT
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CODILA_DTYPE": "float32"}
    env.pop("CODILA_TOKEN", None)
    command = [
        sys.executable,
        "-m",
        "codila_engine.cli",
        "serve",
        "--dlm",
        str(tiny_pair[0]),
        "--ar",
        str(tiny_pair[1]),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--replicas",
        "2",
        "--num-cpus",
        "1",
        "--port",
        str(port),
        "--token-file",
        str(tokens),
        "--max-client-requests",
        str(MAX_CLIENT_REQUESTS),
        "--max-request-mib",
        str(MAX_REQUEST_BYTES / 2**20),
        "--max-auth-failures",
        str(MAX_AUTH_FAILURES),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = TeamServer(f"http://127.0.0.1:{port}", port, proc, log, tokens)
    deadline = time.monotonic() + 300
    while "ready at" not in server.log_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"codila serve did not start (exit {proc.poll()}):\n{server.log_text()[-4000:]}")
        time.sleep(0.25)
    return server


def stop(server: TeamServer) -> None:
    """SIGTERM, as a service manager stops it: it must exit 0, saying so, within a minute."""
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        code = None
    server.stopped = {"code": code, "seconds": time.monotonic() - t0}
    assert code == 0 and "codila serve: stopped" in server.log_text(), (server.stopped, server.log_text()[-3000:])


@pytest.fixture(scope="session")
def team_server(tiny_pair, request):
    """The shared server; the session's last user stops it (a module-scoped user is enough)."""
    global _SERVER
    pytest.importorskip("ray.serve", reason="the team server needs Ray Serve: pip install 'codila[serve]'")
    if _SERVER is None:
        _SERVER = start(tiny_pair)
    yield _SERVER
    server, _SERVER = _SERVER, None
    if server is not None and server.proc.poll() is None:
        stop(server)
