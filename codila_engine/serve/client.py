"""RemoteEngine: the Engine interface over the team server's HTTP API (standard library only).

`RemoteEngine.decode(prefix, suffix, cfg, cancel)` returns a RemoteDecoding that yields the same
Events as a local Decoding and then holds `.result`; a request the engine cannot run raises
ValueError at once, as Engine.decode does. Setting `cancel` posts /v1/cancel the moment it is
set (a watcher thread blocks on the flag), so the replica stops within one iteration and the
stream ends with the decode's real, cancelled Result; if that does not come, the connection is
closed, which cancels it too. The engine unreachable, refusing the token, at its limits, or
losing the replica twice raises EngineUnavailable with the server's own sentence.

Connections are kept alive and reused (pool.py: up to POOL_SIZE idle ones, shared by the
threads using the engine): a decode's stream, read to its end, leaves its connection for the
next request; one cut short (the consumer stopped, a cancel not answered) is closed, which is
what cancels it on the server. A pooled connection that the server closed while it was idle is
noticed before use, or, if the request then gets no answer at all, the request is sent once
more on a new connection; nothing is ever sent again once any of its answer has arrived.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Iterator
from urllib.parse import urlsplit

from codila_engine import installed_version
from codila_engine.config import DecodeConfig
from codila_engine.decoding.events import Event, Result, Stats
from codila_engine.serve import wire
from codila_engine.serve.auth import client_token
from codila_engine.serve.pool import ConnectionPool

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 5.0  # after /v1/cancel, how long to wait for the cancelled result
MAX_LINE = 64 * 2**20
DRAIN_S = 5.0  # after a decode's result line, how long the end of its stream may take before the connection is dropped


@dataclass(frozen=True)
class RemoteModels:
    """What a language server shows of the team server's models (as prepare.folders.Models)."""

    name: str
    dlm: None = None  # the folders are the server's own
    ar: None = None


class EngineUnavailable(RuntimeError):
    """The engine could not be reached, refused the token, is at its limits, or failed a decode."""


class RemoteEngine:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0, idle_timeout: float = 600.0) -> None:
        """`timeout`: connecting and short requests; `idle_timeout`: the longest a decode may go
        without a line (queueing behind other requests included)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the engine URL must be http://HOST:PORT or https://HOST:PORT, got {url!r}")
        self.url = url.rstrip("/")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/")  # behind a reverse proxy under a path prefix
        self.token, self.timeout, self.idle_timeout = token, timeout, idle_timeout
        self._ssl = ssl.create_default_context() if self.scheme == "https" else None
        self.pool = ConnectionPool(self._connection)
        self.info = self._json("GET", "/v1/info")

    @classmethod
    def connect(cls, url: str, token: str | None = None, token_file: str | None = None, **kwargs) -> "RemoteEngine":
        """Connect with `token`, else the first token of `token_file`, else $CODILA_TOKEN_FILE's,
        else $CODILA_TOKEN."""
        return cls(url, token or client_token(token_file), **kwargs)

    @property
    def name(self) -> str:
        return self.info["model"]

    @property
    def models(self) -> RemoteModels:
        return RemoteModels(self.name)

    def decoders(self) -> tuple[str, ...]:
        return tuple(self.info["decoders"])

    @property
    def runs_on(self) -> dict[str, str]:
        """Where the team server's models run: {"device": ..., "dtype": ...}."""
        return {"device": self.info["device"], "dtype": self.info["dtype"]}

    def close(self) -> None:
        """Close the idle connections (decodes still running keep theirs; a later request opens anew)."""
        self.pool.clear()

    # --- HTTP ------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ssl)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _open(self, method: str, path: str, body: dict | None, timeout: float):
        """Send a request on a pooled connection, or a new one; (connection, response) once the
        answer's status and headers have come. The caller hands the connection back (`_release`)."""
        headers = {
            "Authorization": f"Bearer {self.token}",
            "User-Agent": f"codila/{installed_version() or 'dev'}",
            "Accept": "application/json, application/x-ndjson",
        }
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn, pooled = self.pool.get(new=attempt > 1)
            try:
                if conn.sock is None:
                    conn.connect()  # within `self.timeout`
                assert conn.sock is not None
                conn.sock.settimeout(timeout)  # then the answer's own
                conn.request(method, self.base + path, body=data, headers=headers)
                return conn, conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # A kept-alive connection the server closed as we sent: nothing of an answer came,
                # so the request goes again, once, on a new connection (a new connection failing
                # is the answer; so is a timeout, or anything after an answer began).
                if pooled and attempt == 1 and isinstance(exc, ConnectionError):
                    log.debug("a kept-alive connection to %s was closed (%s); sending again", self.url, exc)
                    self.pool.clear()  # its idle siblings likely went the same way (a server restart)
                    continue
                raise EngineUnavailable(
                    f"cannot reach the codila engine at {self.url}: {exc or type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")

    def _release(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        """Back to the pool if its answer was read to the end and the server keeps it open."""
        if response.isclosed() and not response.will_close:
            self.pool.put(conn)
        else:
            conn.close()

    def _failure(self, response: http.client.HTTPResponse) -> Exception:
        """The exception for a non-200 answer: ValueError for the request's own fault."""
        try:
            message = json.loads(response.read(65536) or b"{}").get("error") or response.reason
        except (ValueError, AttributeError, OSError, http.client.HTTPException):
            message = response.reason
        status = response.status
        if status in (400, 413):
            return ValueError(message)
        if status == 401:
            return EngineUnavailable(f"the codila engine at {self.url} did not accept the token (401)")
        return EngineUnavailable(f"the codila engine at {self.url} answered {status}: {message}")

    def _json(self, method: str, path: str, body: dict | None = None):
        conn, response = self._open(method, path, body, self.timeout)
        try:
            if response.status != 200:
                raise self._failure(response)
            try:
                return json.loads(response.read())
            except (ValueError, OSError, http.client.HTTPException) as exc:
                raise EngineUnavailable(f"a broken answer from the codila engine at {self.url}: {exc}") from None
        finally:
            self._release(conn, response)

    # --- the Engine interface ----------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self._json("POST", "/v1/tokenize", {"text": text})["ids"]

    def cancel(self, request_id: str) -> bool:
        """Ask the engine to stop one of this client's decodes; True if it was running."""
        return bool(self._json("POST", "/v1/cancel", {"id": request_id}).get("cancelled"))

    def record(self, request_id: str) -> dict:
        """The replica's record of one of this client's recent decodes."""
        return self._json("GET", f"/v1/requests/{request_id}")

    def records(self) -> list[dict]:
        """This client's recent decodes, newest first."""
        return self._json("GET", "/v1/requests")

    def decode(
        self,
        prefix: str,
        suffix: str = "",
        cfg: DecodeConfig = DecodeConfig(),
        cancel=None,
        *,
        retry: bool = True,
        request_id: str | None = None,
    ) -> "RemoteDecoding":
        """Start a decode on the engine; iterate the answer for its events. Raises ValueError
        for a request the engine cannot run, EngineUnavailable when there is no engine to run it."""
        rid = request_id or uuid.uuid4().hex
        request = wire.DecodeRequest(prefix, suffix, cfg, rid, retry)
        conn, response = self._open("POST", "/v1/decode", request.as_json(), self.idle_timeout)
        if response.status != 200:
            try:
                raise self._failure(response)
            finally:
                self._release(conn, response)
        return RemoteDecoding(self, conn, response, rid, cfg.placeholder, cancel)


def _wait(flag, seconds: float) -> bool:
    """Block until the cancel flag is set or `seconds` pass; a threading.Event wakes at once."""
    if hasattr(flag, "wait"):
        return bool(flag.wait(seconds))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if flag.is_set():
            return True
        time.sleep(0.005)
    return flag.is_set()


class RemoteDecoding:
    """A decode running on the engine: iterate it once for Events; `.result` afterwards."""

    def __init__(self, engine: RemoteEngine, conn, response, request_id: str, placeholder: str, cancel=None) -> None:
        self.engine, self.conn, self.response = engine, conn, response
        self.id, self.placeholder, self.cancel = request_id, placeholder, cancel
        self.result: Result | None = None
        self.stats = Stats()
        self.decoder = ""
        self.replica: str | None = None  # the replica running it, and its process
        self.pid: int | None = None
        self.retries = 0  # times the engine ran it again after losing its replica
        self.cancel_sent_at: float | None = None
        self._finished = threading.Event()
        self._used = False
        self._lock = threading.Lock()  # the connection's fate: back to the pool, or cut by the watcher
        self._done = False  # the stream has ended here: the watcher may no longer touch the connection
        self._cut = False  # the watcher shut the connection down

    def _messages(self) -> Iterator[dict]:
        while True:
            raw = self.response.readline(MAX_LINE)
            if not raw:
                return
            if not raw.endswith(b"\n") and len(raw) >= MAX_LINE:
                raise EngineUnavailable("the codila engine sent a line over 64 MiB")
            try:
                message = json.loads(raw)
            except ValueError:
                raise EngineUnavailable("the codila engine sent a line that is not JSON") from None
            if isinstance(message, dict):
                yield message

    def _watch(self) -> None:
        """On its own thread: the moment `cancel` is set, ask the engine to stop; if the result
        does not follow, close the connection (which also stops the decode)."""
        while not self._finished.is_set():
            if _wait(self.cancel, 0.1):
                break
        else:
            return
        self.cancel_sent_at = time.monotonic()
        try:
            accepted = self.engine.cancel(self.id)
        except (EngineUnavailable, ValueError) as exc:
            log.warning("could not cancel decode %s on the engine: %s", self.id, exc)
            accepted = False
        if not (accepted and self._finished.wait(CANCEL_GRACE_S)):
            self._abort()

    def _abort(self) -> None:
        with self._lock:
            if self._done:  # the stream ended meanwhile; its connection may serve another request now
                return
            self._cut = True
            sock = self.conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _cancelled(self, last: Event | None) -> Result:
        """The result of a decode whose stream was cut after a cancel: what the events showed."""
        text = last.draft.replace(self.placeholder, "") if last is not None and self.placeholder else ""
        stats = replace(self.stats, text_tokens=0)
        return Result(text=text, ids=[], stats=stats, cancelled=True, decoder=self.decoder)

    def __iter__(self) -> Iterator[Event]:
        if self._used:
            raise RuntimeError("a Decoding runs once; start another for a new decode")
        self._used = True
        if self.cancel is not None:
            threading.Thread(target=self._watch, name=f"codila-cancel-{self.id[:8]}", daemon=True).start()
        last = None
        complete = False  # the result line came: the stream can be read to its end and its connection kept
        try:
            for message in self._messages():
                kind = message.get("type")
                if kind == "start":
                    self.decoder, self.replica = message.get("decoder", ""), message.get("replica")
                    self.pid = message.get("pid")
                elif kind == "event":
                    last = wire.event_of(message)
                    self.stats.iterations = last.iteration
                    self.stats.tokens += len(last.positions)
                    if self.stats.first_commit_s is None:
                        self.stats.first_commit_s = last.elapsed_s
                    yield last
                elif kind == "retry":
                    self.retries += 1
                    self.stats, last = Stats(), None
                    log.warning("decode %s: %s", self.id, message.get("message"))
                elif kind == "result":
                    self.result = wire.result_of(message)
                    self.stats = self.result.stats
                    complete = True
                    return
                elif kind == "error":
                    if self.cancel_sent_at is not None:
                        break
                    raise EngineUnavailable(message.get("message") or "the codila engine failed the decode")
            if self.cancel_sent_at is None:
                raise EngineUnavailable(f"the codila engine at {self.engine.url} closed the decode before its result")
            self.result = self._cancelled(last)
        except (OSError, http.client.HTTPException) as exc:
            if self.cancel_sent_at is None:
                raise EngineUnavailable(f"lost the codila engine at {self.engine.url} mid-decode: {exc}") from None
            self.result = self._cancelled(last)
        except GeneratorExit:  # the consumer stopped reading: closing the connection cancels it
            self.result = self._cancelled(last)
            raise
        finally:
            self._finished.set()
            with self._lock:
                self._done = True
                keep = complete and not self._cut
            if keep:
                self._keep()
            else:
                self.conn.close()

    def _keep(self) -> None:
        """Read the stream's end (it follows the result line at once) and pool the connection."""
        try:
            if self.conn.sock is not None:
                self.conn.sock.settimeout(DRAIN_S)
            self.response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return
        self.engine._release(self.conn, self.response)

    def run(self) -> Result:
        for _ in self:
            pass
        assert self.result is not None
        return self.result
