"""The team server's HTTP front: every request is authenticated, bounded and checked here.

Order, for every request: an address locked out after too many failed authentications (429,
its token not even looked at), the token (401, before anything about the request is read or
revealed), the body's size (413), the per-client and total limits (429), the body itself (400),
then the work. A rejected request gets its status and a one-sentence JSON error, nothing else,
and one warning line in the log; the recent ones are counted in /v1/info. A decode streams NDJSON
from a replica (wire.py); if its replica dies, it runs again once on another replica (a `retry`
line says the drafts start over), else the stream ends with an `error` line. The client closing
the connection, or POST /v1/cancel, cancels the decode on its replica within one iteration.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from codila_engine.serve import wire
from codila_engine.serve.auth import ClientLimits, FailedLogins, Tokens

log = logging.getLogger("ray.serve.codila")
NDJSON = "application/x-ndjson"
ROUTES = {
    "/v1/decode": "POST",
    "/v1/cancel": "POST",
    "/v1/tokenize": "POST",
    "/v1/info": "GET",
}
REQUESTS = "/v1/requests/"  # GET: this client's recent decodes; + id: the record of one
CANCEL_WAIT_S = 10.0  # how long a cancelled stream waits for its replica's final record


@dataclass(frozen=True)
class Limits:
    max_client_requests: int = 4  # in flight per client (decodes, cancels, tokenizes, infos)
    max_requests: int = 256  # in flight in all
    max_request_bytes: int = 4 * 2**20
    retry: bool = True  # run a decode again, once, when its replica dies
    max_auth_failures: int = 10  # failed authentications per address within the window; then 429 (0: no limit)
    auth_failure_window_s: float = 60.0  # the window, and how long an address stays locked out


class Rejected(Exception):
    def __init__(self, status: int, message: str, why: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.why = status, message, why or message


@dataclass
class Flight:
    """A decode in flight: what its client named it and the stream from its replica."""

    uid: str
    client: str
    id: str
    stream: Any = None  # the DeploymentResponseGenerator from its replica
    attempts: int = 0
    cancelled: bool = False
    closed: bool = False
    started: float = field(default_factory=time.monotonic)


class Gateway:
    def __init__(self, engine, ledger, tokens: Tokens, limits: Limits) -> None:
        self.engine, self.ledger = engine, ledger  # deployment handles
        self.tokens, self.limits = tokens, limits
        self.admit = ClientLimits(limits.max_client_requests, limits.max_requests)
        self.failed_logins = FailedLogins(limits.max_auth_failures, limits.auth_failure_window_s)
        self.flights: dict[tuple[str, str], Flight] = {}
        self.rejected: Counter[int] = Counter()
        self.recent: deque[dict] = deque(maxlen=50)
        self.served = 0

    # --- every request ---------------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        peer = request.client.host if request.client else "?"
        wait = self.failed_logins.locked(peer, time.monotonic())
        if wait > 0:  # the token is not looked at: guessing gets nothing; logged once, when it began
            return self.locked_out(wait)
        try:
            name = self.tokens.client(request.headers.get("authorization"))
            if name is None:
                why = "no token" if "authorization" not in request.headers else "a token that is not accepted"
                if self.failed_logins.failed(peer, time.monotonic()):
                    log.warning(
                        "locking out %s for %g s: %d failed authentications within %g s (its requests get 429)",
                        peer,
                        self.limits.auth_failure_window_s,
                        self.limits.max_auth_failures,
                        self.limits.auth_failure_window_s,
                    )
                raise Rejected(401, "unauthorized", why)
            client = name or f"@{peer}"  # unnamed tokens: one client per address
            path = request.url.path
            if path.startswith(REQUESTS) and request.method == "GET":
                return await self.lookup(client, path.removeprefix(REQUESTS))
            if path == REQUESTS.rstrip("/") and request.method == "GET":
                return JSONResponse(await self.ledger.recent.remote(client))
            if path not in ROUTES:
                raise Rejected(404, f"no such endpoint: {path[:100]}")
            if request.method != ROUTES[path]:
                raise Rejected(405, f"{path} takes {ROUTES[path]}")
            if path == "/v1/cancel":  # never held back by the limits: a client at its limit must be able to cancel
                data = wire.parse_object(await self.body(request))
                return JSONResponse({"cancelled": self.cancel(client, wire.parse_cancel(data))})
            refused = self.admit.enter(client)
            if refused is not None:
                raise Rejected(429 if "this client" in refused else 503, refused)
            leave = True
            try:
                if path == "/v1/info":
                    return JSONResponse(await self.info())
                data = wire.parse_object(await self.body(request))
                if path == "/v1/tokenize":
                    ids = await self.engine.tokenize.remote(wire.parse_tokenize(data))
                    return JSONResponse({"ids": ids, "count": len(ids)})
                response = await self.decode(client, wire.parse_decode(data))
                leave = not isinstance(response, Stream)  # the stream leaves when it ends
                return response
            finally:
                if leave:
                    self.admit.leave(client)
        except wire.BadRequest as exc:
            return self.reject(request, peer, Rejected(400, str(exc)))
        except Rejected as exc:
            return self.reject(request, peer, exc)
        except ClientDisconnect:
            return Response(status_code=400)

    def locked_out(self, wait: float) -> Response:
        """429 for an address locked out after failed authentications: counted, not logged."""
        self.rejected[429] += 1
        seconds = max(1, math.ceil(wait))
        message = f"too many failed authentications from this address; try again in {seconds} s"
        return JSONResponse({"error": message}, status_code=429, headers={"Retry-After": str(seconds)})

    def reject(self, request: Request, peer: str, exc: Rejected) -> Response:
        self.rejected[exc.status] += 1
        entry = {"status": exc.status, "reason": exc.why, "method": request.method, "path": request.url.path[:100]}
        self.recent.append({**entry, "peer": peer, "at": round(time.time(), 3)})
        log.warning("rejected %s %s from %s: %d (%s)", request.method, entry["path"], peer, exc.status, exc.why)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    async def body(self, request: Request) -> bytes:
        limit = self.limits.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Rejected(400, "Content-Length is not a number")
            if int(declared) > limit:
                raise Rejected(413, f"the body has {int(declared):,} bytes; this server takes at most {limit:,}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejected(413, f"the body is over {limit:,} bytes, the most this server takes")
            chunks.append(chunk)
        return b"".join(chunks)

    # --- the endpoints ---------------------------------------------------------------------
    async def info(self) -> dict:
        engine = await self.engine.info.remote()
        from ray import serve

        try:
            status = (await asyncio.to_thread(serve.status)).applications[serve.get_replica_context().app_name]
            states = dict(status.deployments[engine["deployment"]].replica_states)
        except Exception:  # the controller busy or gone: the rest still answers
            states = {}
        return {
            **{k: engine[k] for k in ("model", "decoders", "device", "dtype", "batching", "max_decodes")},
            "replicas": states,
            "answered_by": {  # the replica that answered this request: its counters are its own
                k: engine[k]
                for k in (
                    "replica",
                    "pid",
                    "running",
                    "decodes",
                    "batched_forwards",
                    "batched_canvases",
                    "batched_ar_calls",
                    "batched_ar_asks",
                )
            },
            "limits": {
                "max_client_requests": self.limits.max_client_requests,
                "max_requests": self.limits.max_requests,
                "max_request_bytes": self.limits.max_request_bytes,
                "max_auth_failures": self.limits.max_auth_failures,
                "auth_failure_window_s": self.limits.auth_failure_window_s,
                "max_new_tokens": wire.MAX_NEW_TOKENS,
                "max_context": wire.MAX_CONTEXT,
            },
            "in_flight": len(self.flights),
            "served": self.served,
            "rejected": {str(k): v for k, v in sorted(self.rejected.items())},
            "recent_rejections": list(self.recent),
            "lockouts": {"active": self.failed_logins.active(time.monotonic()), "total": self.failed_logins.lockouts},
        }

    async def lookup(self, client: str, text: str) -> Response:
        try:
            rid = wire.request_id(text)
        except wire.BadRequest as exc:
            raise Rejected(400, str(exc)) from None
        record = await self.ledger.find.remote(client, rid)
        if record is None:
            raise Rejected(404, f"no recent decode {rid} of this client")
        return JSONResponse(record)

    def cancel(self, client: str, rid: str) -> bool:
        flight = self.flights.get((client, rid))
        if flight is None or flight.cancelled:
            return False
        flight.cancelled = True
        if flight.stream is not None:
            flight.stream.cancel()
        return True

    def start(self, flight: Flight, request: wire.DecodeRequest):
        flight.attempts += 1
        flight.stream = self.engine.options(stream=True).decode.remote(request.as_json(), flight.uid, flight.client)
        return flight.stream

    def close(self, flight: Flight) -> None:
        """A decode's bookkeeping ends, once, however its request does (the client gone too)."""
        if flight.closed:
            return
        flight.closed = True
        self.flights.pop((flight.client, flight.id), None)
        self.admit.leave(flight.client)
        if flight.stream is not None:
            flight.stream.cancel()  # a no-op once the decode has ended; else it stops on its replica

    async def decode(self, client: str, request: wire.DecodeRequest) -> Response:
        uid = uuid.uuid4().hex
        rid = request.id or uid
        if (client, rid) in self.flights:
            raise Rejected(400, f"a decode with id {rid} is already in flight")
        request = wire.DecodeRequest(request.prefix, request.suffix, request.config, rid, request.retry)
        flight = Flight(uid, client, rid)
        self.flights[(client, rid)] = flight
        try:
            first = await self.first(flight, request)
        except BaseException:
            self.flights.pop((client, rid), None)
            raise
        if first["type"] == "error":
            self.flights.pop((client, rid), None)
            if first["status"] == 400:
                raise Rejected(400, first["message"], f"the engine cannot run it: {first['message']}")
            return JSONResponse({"error": first["message"]}, status_code=first["status"])
        self.served += 1
        return Stream(
            self.stream(flight, request, first),
            lambda: self.close(flight),
            media_type=NDJSON,
            headers={"X-Codila-Id": rid, "Cache-Control": "no-store"},
        )

    async def first(self, flight: Flight, request: wire.DecodeRequest) -> dict:
        """The replica's first message (start, or an error before any decoding); a replica that
        dies before it answers is retried at once (nothing was streamed yet)."""
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import RequestCancelledError

        while True:
            try:
                return await self.start(flight, request).__anext__()
            except RequestCancelledError:
                if not flight.cancelled:
                    raise
                return await self.cancelled(flight)
            except RayActorError as exc:
                if flight.cancelled:
                    return await self.cancelled(flight)
                if flight.attempts > 1 or not (request.retry and self.limits.retry):
                    log.warning("decode %s (%s): %s", flight.id, flight.client, died(exc, flight.attempts))
                    return {"type": "error", "status": 503, "message": died(exc, flight.attempts)}
                log.warning(
                    "decode %s (%s): its replica died before answering; trying another", flight.id, flight.client
                )
            except StopAsyncIteration:
                return {"type": "error", "status": 500, "message": "the engine ended the decode without an answer"}

    async def stream(self, flight: Flight, request: wire.DecodeRequest, first: dict):
        """The decode's lines, from the replica's first message to its result (or error)."""
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import RequestCancelledError

        try:
            item = first
            while True:
                yield wire.line(item)
                if item["type"] in ("result", "error"):
                    return
                try:
                    item = await flight.stream.__anext__()
                except StopAsyncIteration:
                    item = {"type": "error", "status": 500, "message": "the engine stream ended without a result"}
                except RequestCancelledError:
                    if not flight.cancelled:
                        raise
                    item = await self.cancelled(flight)
                except RayActorError as exc:
                    if flight.cancelled:
                        item = await self.cancelled(flight)
                    elif flight.attempts > 1 or not (request.retry and self.limits.retry):
                        log.warning("decode %s (%s): %s", flight.id, flight.client, died(exc, flight.attempts))
                        item = {"type": "error", "status": 503, "message": died(exc, flight.attempts)}
                    else:
                        log.warning(
                            "decode %s (%s): its replica died mid-decode; running it again", flight.id, flight.client
                        )
                        yield wire.line({"type": "retry", "message": "the engine replica died; decoding again"})
                        item = await self.first(flight, request)
        finally:
            self.close(flight)

    async def cancelled(self, flight: Flight) -> dict:
        """The result of a decode cancelled by /v1/cancel: its replica's own record (real stats
        and what was committed), once the decode has stopped."""
        record = await self.ledger.wait.remote(flight.uid, CANCEL_WAIT_S)
        if record is not None and record.get("result") is not None:
            return record["result"]
        if record is not None and record.get("status") == "rejected":
            return {"type": "error", "status": 400, "message": record["error"]}
        return {"type": "error", "status": 504, "message": "cancelled; the engine did not report where it stopped"}


class Stream(StreamingResponse):
    """A streamed answer that runs `on_close` however sending ends, even if it never began."""

    def __init__(self, body, on_close, **kwargs) -> None:
        super().__init__(body, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def died(exc: Exception, attempts: int) -> str:
    again = " (and again on a second replica)" if attempts > 1 else ""
    return (
        f"the engine replica running this decode died{again} ({type(exc).__name__}); the server restarts "
        "it, and other requests go on: ask again"
    )


class Ledger:
    """Recent decodes' records, as their replicas report them (one replica of this deployment)."""

    def __init__(self, keep: int = 1024) -> None:
        self.keep = keep
        self.records: dict[str, dict] = {}  # uid -> record, oldest first
        self.arrived: dict[str, asyncio.Event] = {}

    def record(self, record: dict) -> None:
        self.records[record["uid"]] = record
        while len(self.records) > self.keep:
            del self.records[next(iter(self.records))]
        event = self.arrived.pop(record["uid"], None)
        if event is not None:
            event.set()

    async def wait(self, uid: str, timeout: float) -> dict | None:
        if uid not in self.records:
            event = self.arrived.setdefault(uid, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                self.arrived.pop(uid, None)
        return self.records.get(uid)

    def recent(self, client: str, count: int = 50) -> list[dict]:
        """A client's latest records, newest first (without the cancelled text)."""
        mine = [r for r in reversed(self.records.values()) if r["client"] == client][:count]
        return [{k: v for k, v in r.items() if k != "result"} for r in mine]

    def find(self, client: str, rid: str) -> dict | None:
        """A client's latest record under its own id (without the cancelled text)."""
        for record in reversed(self.records.values()):
            if record["client"] == client and record["id"] == rid:
                return {k: v for k, v in record.items() if k != "result"}
        return None
