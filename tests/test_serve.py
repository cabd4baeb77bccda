"""The team server (`codila serve`): its messages, tokens and batcher on their own, then the real
server on local Ray (127.0.0.1, the tiny pair, two replicas) through RemoteEngine and raw HTTP."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import threading
import time

import pytest
import torch
from serve_fixtures import CLIENTS, MAX_AUTH_FAILURES, MAX_CLIENT_REQUESTS, MAX_REQUEST_BYTES, TeamServer, token_of
from serve_fixtures import team_server  # noqa: F401 - the shared server, a fixture

from codila_engine.config import DecodeConfig
from codila_engine.decoding.events import Result
from codila_engine.serve import wire
from codila_engine.serve.auth import ClientLimits, FailedLogins, TokenError, Tokens, client_token
from codila_engine.serve.client import EngineUnavailable, RemoteEngine
from codila_engine.serve.pool import POOL_SIZE

LONG = DecodeConfig(max_new_tokens=400, block_size=1)  # 400 one-token iterations: long enough to interrupt
PROMPT = "def add(a, b):\n"
SUFFIX = "\nprint(add(1, 2))\n"  # infilling: an EOS does not end the span early, every decode runs to its end


# --- without Ray -------------------------------------------------------------------------------
def test_decode_requests_are_checked_field_by_field():
    ok = wire.parse_decode({"prefix": "x", "settings": {"block_size": 2, "seed": None}, "id": "a-1"})
    assert ok.suffix == "" and ok.config.block_size == 2 and ok.config.seed is None and ok.retry
    assert wire.parse_decode(ok.as_json()) == ok
    bad = [
        ({}, "prefix is missing"),
        ({"prefix": 3}, "prefix must be a string"),
        ({"prefix": "x", "suffix": None}, "suffix must be a string"),
        ({"prefix": "x", "extra": 1}, "unknown field(s): extra"),
        ({"prefix": "x", "settings": []}, "settings must be an object"),
        ({"prefix": "x", "settings": {"blockSize": 2}}, "unknown setting(s): blockSize"),
        ({"prefix": "x", "settings": {"block_size": 0}}, "settings.block_size"),
        ({"prefix": "x", "settings": {"block_size": True}}, "settings.block_size"),
        ({"prefix": "x", "settings": {"max_new_tokens": 5000, "max_context": 9000}}, "at most 4096"),
        ({"prefix": "x", "settings": {"max_context": 10**9}}, "at most 32768"),
        ({"prefix": "x", "settings": {"placeholder": "." * 17}}, "at most 16 characters"),
        ({"prefix": "x", "id": "a b"}, "id must be"),
        ({"prefix": "x", "retry": "yes"}, "retry must be true or false"),
        ({"prefix": "\ud800"}, "lone surrogate"),
    ]
    for data, message in bad:
        with pytest.raises(wire.BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
            wire.parse_decode(data)
    for body, message in (
        (b"\xff", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"prefix": NaN}', "strict JSON"),
        (b"[" * 100_000, "not JSON|nests too deeply"),
    ):
        with pytest.raises(wire.BadRequest, match=message):
            wire.parse_object(body)


def test_events_and_results_cross_the_wire_unchanged(engine):
    decoding = engine.decode(PROMPT, "", DecodeConfig(max_new_tokens=8))
    events = list(decoding)
    lines = [json.loads(wire.line(wire.event_message(e))) for e in events]
    assert [wire.event_of(m) for m in lines] == events
    back = wire.result_of(json.loads(wire.line(wire.result_message(decoding.result, "r1"))))
    assert back == decoding.result


def test_tokens_come_from_a_file_or_the_environment_never_short(tmp_path, monkeypatch):
    good = "x" * 20
    file = tmp_path / "tokens"
    file.write_text(f"# team\nalice {good}\n{'y' * 24}\n")
    tokens = Tokens.load(file)
    assert tokens.client(f"Bearer {good}") == "alice" and tokens.client(f"bearer {'y' * 24}") == ""
    for header in (None, "", "Bearer", f"Basic {good}", f"Bearer {good}x", good):
        assert tokens.client(header) is None, header
    assert good not in repr(tokens)  # only digests are kept
    assert client_token(file) == good
    file.write_text("alice short\n")
    with pytest.raises(TokenError, match="at least 16 characters"):
        Tokens.load(file)
    monkeypatch.delenv("CODILA_TOKEN", raising=False)
    monkeypatch.delenv("CODILA_TOKEN_FILE", raising=False)
    with pytest.raises(TokenError, match="no token"):
        Tokens.load()
    monkeypatch.setenv("CODILA_TOKEN", good)
    assert Tokens.load().client(f"Bearer {good}") == "" and client_token() == good


def test_client_limits_count_per_client_and_in_all():
    limits = ClientLimits(per_client=2, total=3)
    assert limits.enter("a") is None and limits.enter("a") is None
    assert "this client" in limits.enter("a")
    assert limits.enter("b") is None
    assert "limit of 3" in limits.enter("c")
    limits.leave("a")
    assert limits.enter("c") is None and limits.open == {"a": 1, "b": 1, "c": 1}


def test_failed_logins_lock_an_address_out_for_the_window_then_it_starts_afresh():
    logins = FailedLogins(limit=3, window_s=60)
    assert not logins.failed("a", 0.0) and not logins.failed("a", 1.0) and logins.locked("a", 1.0) == 0
    assert logins.failed("a", 2.0)  # the third within the window: locked out, said once
    assert logins.locked("a", 2.5) == 59.5 and logins.locked("a", 61.9) == pytest.approx(0.1)
    assert logins.locked("b", 2.5) == 0 and not logins.failed("b", 3.0)  # other addresses go on
    assert logins.lockouts == 1 and logins.active(10.0) == 1
    assert logins.locked("a", 62.0) == 0 and "a" not in logins.entries  # the window passed: a fresh start
    assert not logins.failed("a", 63.0) and not logins.failed("a", 64.0) and logins.failed("a", 65.0)
    assert logins.lockouts == 2

    sliding = FailedLogins(limit=3, window_s=60)
    for t in (0.0, 30.0, 61.0):  # the first has aged out by the third
        assert not sliding.failed("a", t)
    assert sliding.locked("a", 61.0) == 0 and sliding.failed("a", 62.0)  # 30, 61, 62
    assert sliding.locked("a", 100.0) == 22.0

    assert not any(FailedLogins(limit=0).failed("a", float(t)) for t in range(100))  # 0: no limit
    with pytest.raises(ValueError):
        FailedLogins(limit=3, window_s=0)


def test_failed_logins_remember_a_bounded_number_of_addresses():
    logins = FailedLogins(limit=2, window_s=60, max_addresses=100)
    for n in range(10_000):  # many addresses, each failing once: the least recently failed are forgotten
        logins.failed(f"10.0.{n // 256}.{n % 256}", n / 1000)
        assert len(logins.entries) <= 100
    assert "10.0.0.0" not in logins.entries and "10.0.39.15" in logins.entries
    assert logins.failed("10.0.39.15", 10.0)  # a remembered one still locks out
    logins.failed("192.0.2.1", 200.0)  # later: every other entry has expired and goes
    assert list(logins.entries) == ["192.0.2.1"]


class _StubHandler(http.server.BaseHTTPRequestHandler):
    """The team server's API as far as RemoteEngine's connections are concerned (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server: "_Stub"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def answer(self) -> None:
        stub = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with stub.lock:
            stub.seen.append((self.path, self.client_address[1]))  # the client's port: its connection
            drop, stub.drop = stub.drop > 0, max(0, stub.drop - 1)
        if drop:  # as a server closing an idle connection the moment the request came: no answer at all
            self.close_connection = True
            return
        if self.path == "/v1/decode":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            lines = [{"type": "start", "id": body["id"], "replica": "r", "pid": 1, "decoder": "codila"}]
            lines.append(wire.result_message(Result("x", [1], decoder="codila"), body["id"]))
            for n, message in enumerate(lines):
                data = wire.line(message)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                if stub.cut_decodes and n == 0:  # the stream breaks after its first line
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
        else:
            answers = {"/v1/info": {"model": "stub", "decoders": ["codila"]}, "/v1/tokenize": {"ids": [1, 2]}}
            data = json.dumps(answers.get(self.path, {"cancelled": False})).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        if stub.close_after:  # answered, then the connection closed without a word (a keep-alive timeout)
            self.close_connection = True


class _Stub(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int]] = []
        self.drop = 0  # the next `drop` requests get no answer, their connection closed
        self.close_after = False
        self.cut_decodes = False
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "_Stub":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()

    def connections(self) -> int:
        return len({port for _, port in self.seen})


def test_remote_engine_reuses_its_connections_and_resends_only_what_got_no_answer():
    with _Stub() as stub:
        engine = RemoteEngine(stub.url, "x" * 20)
        for _ in range(5):
            assert engine.decode(PROMPT).run().text == "x" and engine.encode("a") == [1, 2]
        assert len(stub.seen) == 11 and stub.connections() == 1 == engine.pool.opened  # one connection for all

        stub.drop = 1  # the kept-alive connection closed as the request came: sent again, once, on a new one
        assert engine.encode("a") == [1, 2]
        assert [path for path, _ in stub.seen[-2:]] == ["/v1/tokenize"] * 2 and stub.connections() == 2
        stub.drop = 2  # and a new connection failing too is the answer
        with pytest.raises(EngineUnavailable, match="cannot reach"):
            engine.decode(PROMPT)
        assert [path for path, _ in stub.seen[-2:]] == ["/v1/decode"] * 2 and len(stub.seen) == 15
        with pytest.raises(EngineUnavailable, match="cannot reach"):
            RemoteEngine("http://127.0.0.1:9", "x" * 20)  # nothing listens there: nothing to resend

        stub.close_after = True  # closed after answering: noticed (or resent) before the next request
        for _ in range(3):
            assert engine.encode("a") == [1, 2]
        stub.close_after = False
        assert [path for path, _ in stub.seen[-3:]] == ["/v1/tokenize"] * 3  # each sent once

        stub.cut_decodes = True  # an answer had begun: never sent again
        before = len(stub.seen)
        with pytest.raises(EngineUnavailable, match="before its result|mid-decode"):
            engine.decode(PROMPT).run()
        assert [path for path, _ in stub.seen[before:]] == ["/v1/decode"]
        stub.cut_decodes = False

        errors: list[Exception] = []

        def client() -> None:  # the language server's threads share one engine
            try:
                for _ in range(10):
                    assert engine.decode(PROMPT).run().text == "x" and engine.encode("a") == [1, 2]
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors and len(engine.pool.idle) <= POOL_SIZE, errors
        engine.close()
        assert not engine.pool.idle


def test_batched_forwards_equal_single_ones_and_concurrent_decodes_share_them(tiny_pair):
    from codila_engine.engine import Engine
    from codila_engine.serve.batching import BatchedDLM, _Ask

    engine = Engine.load(*tiny_pair, device="cpu", dtype="float32")
    cfg = engine.resolve(DecodeConfig(max_new_tokens=16))
    prompts = [PROMPT, "for i in range(10):\n    print(i)\n" * 3, "class Point:\n", "import os\n" * 7]
    asks = []
    for prompt in prompts:
        canvas = engine.canvas(prompt, "", cfg)
        asks.append(_Ask(canvas.ids, torch.arange(canvas.start, canvas.start + 8)))
    batched = BatchedDLM(engine.dlm, wait_s=0.05)
    assert len({a.ids.shape[0] for a in asks}) == 4  # padding and its mask are exercised
    for ask, logits in zip(asks, batched.forward(asks)):
        alone = engine.dlm.marginal_logits(ask.ids, ask.positions)
        finite = torch.isfinite(alone)
        assert torch.equal(finite, torch.isfinite(logits))
        assert torch.allclose(alone[finite], logits[finite], atol=1e-4)
    engine.dlm = batched
    results, shared = [None] * 4, [0] * 4

    def run(i: int) -> None:
        with batched.decoding():
            results[i] = engine.decode(prompts[i], "", cfg).run()
            shared[i] = batched.shared

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None and not r.cancelled and r.stats.iterations == 4 for r in results)
    assert batched.canvases == sum(r.stats.iterations for r in results)  # every forward went through it
    assert batched.forwards < batched.canvases and sum(shared) > 0  # and some ran together


# --- the server ----------------------------------------------------------------------------------
def remote(server: TeamServer, name: str = "alice") -> RemoteEngine:
    return RemoteEngine(server.url, token_of(name))


def test_info_names_the_model_and_two_running_replicas(team_server: TeamServer):
    info = remote(team_server).info
    assert info["model"].startswith("DLM ") and info["replicas"] == {"RUNNING": 2}
    assert info["batching"] is True and "codila" in info["decoders"]
    assert info["limits"]["max_client_requests"] == MAX_CLIENT_REQUESTS
    counters = info["answered_by"]  # the answering replica's own counters
    assert counters["batched_ar_asks"] >= counters["batched_ar_calls"] >= 0 and counters["pid"] > 0


def test_a_decode_streams_what_the_engine_yields_in_process(team_server: TeamServer, engine):
    cfg = DecodeConfig(max_new_tokens=16, seed=7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the replica: the same float rounding, so the same choices
    try:
        local = engine.decode(PROMPT, "\nprint(add(1, 2))\n", cfg)
        expected = list(local)
    finally:
        torch.set_num_threads(threads)
    decoding = remote(team_server).decode(PROMPT, "\nprint(add(1, 2))\n", cfg)
    events = list(decoding)
    same = ("iteration", "positions", "ids", "text", "draft", "masks", "source")
    assert [[getattr(e, k) for k in same] for e in events] == [[getattr(e, k) for k in same] for e in expected]
    assert "\u22ef" in events[0].draft and events[0].masks
    r, want = decoding.result, local.result
    assert (r.text, r.ids, r.cancelled, r.decoder) == (want.text, want.ids, False, "codila")
    assert r.stats.iterations == want.stats.iterations and r.stats.text_tokens == want.stats.text_tokens
    assert r.stats.wall_s > 0 and r.stats.dlm_s > 0 and decoding.replica
    assert len(remote(team_server).encode(PROMPT)) == len(engine.encode(PROMPT))


def test_twenty_concurrent_clients_complete_on_both_replicas_sharing_forwards(team_server: TeamServer):
    cfg = DecodeConfig(max_new_tokens=32)
    outcomes: dict[str, object] = {}
    start = threading.Barrier(len(CLIENTS))

    def client(name: str) -> None:
        try:
            engine = remote(team_server, name)
            start.wait(60)
            decoding = engine.decode(PROMPT * (1 + CLIENTS.index(name) % 4), "", cfg, request_id=f"many-{name}")
            events = list(decoding)
            outcomes[name] = (decoding, events, engine.record(decoding.id))
        except Exception as exc:  # noqa: BLE001 - reported below, per client
            outcomes[name] = exc

    threads = [threading.Thread(target=client, args=(name,)) for name in CLIENTS]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    wall = time.monotonic() - t0
    failed = {k: v for k, v in outcomes.items() if isinstance(v, Exception)}
    assert not failed and len(outcomes) == 20, failed
    replicas = set()
    shared = 0
    shared_ar = 0
    for decoding, events, record in outcomes.values():
        assert not decoding.result.cancelled and decoding.result.stats.iterations == len(events) >= 1
        assert record["status"] == "done" and record["iterations"] == len(events)
        replicas.add(record["replica"])
        shared += record["shared_forwards"]
        shared_ar += record["shared_ar_calls"]
    print(f"\n20 concurrent clients: {wall:.1f}s, {shared} DLM forwards shared a batch")
    assert len(replicas) == 2  # both replicas served
    assert shared > 0  # concurrent decodes on a replica shared DLM forwards
    print(f"{shared_ar} AR block decodes shared a batch")
    assert shared_ar > 0  # and AR block decodes (sampled, each decode's rows from its own generator)


def test_a_cancel_stops_the_decode_on_its_replica_within_one_iteration(team_server: TeamServer):
    engine = remote(team_server, "bob")
    cancel = threading.Event()
    decoding = engine.decode(PROMPT, SUFFIX, LONG, cancel)
    seen = 0
    for _ in decoding:
        seen += 1
        if seen == 3:
            cancel.set()
    result = decoding.result
    assert result.cancelled and result.stats.iterations < 400
    record = engine.record(decoding.id)
    assert record["status"] == "cancelled" and record["cancel_at"] is not None
    assert record["iterations"] - record["cancel_at"] <= 1, record  # within one iteration of the cancel
    assert result.stats.iterations == record["iterations"]  # the real stats came back

    # the client going away cancels too: read two lines, close the connection
    conn = http.client.HTTPConnection("127.0.0.1", team_server.port, timeout=30)
    body = json.dumps({"prefix": PROMPT, "suffix": SUFFIX, "settings": wire.settings_of(LONG), "id": "gone-1"})
    conn.request("POST", "/v1/decode", body, {"Authorization": f"Bearer {token_of('bob')}"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("X-Codila-Id") == "gone-1"
    assert json.loads(response.readline())["type"] == "start"
    assert json.loads(response.readline())["type"] == "event"
    conn.sock.shutdown(2)
    conn.close()
    for _ in range(100):
        try:
            record = engine.record("gone-1")
            if record["status"] != "running":
                break
        except EngineUnavailable:  # 404: not recorded yet
            pass
        time.sleep(0.1)
    assert record["status"] == "cancelled" and record["iterations"] - record["cancel_at"] <= 1, record
    assert record["iterations"] < 400


def _raw_decode(server: TeamServer, body: bytes, headers: dict) -> tuple[int, dict, dict]:
    status, got, raw = server.call("POST", "/v1/decode", body, headers)
    return status, got, json.loads(raw) if raw else {}


def test_unauthenticated_wrong_token_oversized_and_malformed_requests_are_rejected_and_logged(
    team_server: TeamServer,
):
    before = team_server.info()["rejected"]
    good = {"Authorization": f"Bearer {token_of('carol')}", "Content-Type": "application/json"}
    valid = json.dumps({"prefix": PROMPT, "settings": {"max_new_tokens": 4}}).encode()
    unauthorized = [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {token_of('carol')}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {token_of('carol')}x"},
    ]
    for headers in unauthorized:
        status, got, body = _raw_decode(team_server, valid, headers)
        assert (status, body) == (401, {"error": "unauthorized"}) and got.get("www-authenticate") == "Bearer"
    status, _, raw = team_server.call("GET", "/v1/secret-path")
    assert (status, json.loads(raw)) == (401, {"error": "unauthorized"})  # not 404: nothing is revealed
    status, _, raw = team_server.call("GET", "/v1/secret-path", headers=good)
    assert status == 404
    oversized = json.dumps({"prefix": "x" * MAX_REQUEST_BYTES}).encode()
    status, _, body = _raw_decode(team_server, oversized, good)
    assert status == 413 and list(body) == ["error"]
    conn = http.client.HTTPConnection("127.0.0.1", team_server.port, timeout=30)  # no Content-Length: chunked
    conn.request("POST", "/v1/decode", iter([oversized[:40_000], oversized[40_000:]]), good, encode_chunked=True)
    assert conn.getresponse().status == 413
    conn.close()
    malformed = [
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        b'{"prefix": NaN}',
        b'{"suffix": "x"}',
        b'{"prefix": 5}',
        b'{"prefix": "x", "settings": {"block_size": 0}}',
        b'{"prefix": "x", "settings": {"blockSize": 4}}',
        b'{"prefix": "x", "settings": {"max_new_tokens": 1500}}',  # past the DLM's positions: found by the engine
        b'{"prefix": "\\ud800"}',
    ]
    for body in malformed:
        status, _, answer = _raw_decode(team_server, body, good)
        assert status == 400 and list(answer) == ["error"] and "Traceback" not in answer["error"], (body, answer)
    status, _, answer = _raw_decode(team_server, b'{"prefix": "x", "settings": {"max_new_tokens": 1500}}', good)
    assert "does not fit the DLM's 1024 positions" in answer["error"]
    status, _, _ = team_server.call("GET", "/v1/decode", headers=good)
    assert status == 405
    info = team_server.info()
    counts = {k: info["rejected"].get(k, 0) - before.get(k, 0) for k in ("400", "401", "404", "405", "413")}
    assert counts == {"400": 11, "401": 6, "404": 1, "405": 1, "413": 2}, counts
    reasons = [r["reason"] for r in info["recent_rejections"]]
    assert "no token" in reasons and "a token that is not accepted" in reasons
    assert any("not JSON" in r for r in reasons) and any(r.startswith("the body is over") for r in reasons)
    assert all(token_of("carol") not in json.dumps(r) for r in info["recent_rejections"])
    for _ in range(50):  # and in the server's log, one warning line each
        if team_server.log_text().count("rejected POST /v1/decode") >= 18:
            break
        time.sleep(0.2)
    assert team_server.log_text().count("rejected POST /v1/decode") >= 18
    assert remote(team_server, "carol").decode(PROMPT, "", DecodeConfig(max_new_tokens=4)).run().text is not None


def _can_send_from(address: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def test_an_address_failing_to_authenticate_too_often_is_locked_out_without_its_token_checked(
    team_server: TeamServer,
):
    if not _can_send_from("127.0.0.2"):
        pytest.skip("cannot send from 127.0.0.2 here (all of 127/8 is loopback on Linux)")
    guess = {"Authorization": "Bearer guessed-token-0123456789"}
    good = {"Authorization": f"Bearer {token_of('carol')}"}
    before = team_server.info()
    for _ in range(MAX_AUTH_FAILURES):
        status, _, _ = team_server.call("GET", "/v1/info", headers=guess, source="127.0.0.2")
        assert status == 401
    for headers in (guess, good, guess):  # locked out: not even the right token is looked at
        status, got, raw = team_server.call("GET", "/v1/info", headers=headers, source="127.0.0.2")
        got = {k.lower(): v for k, v in got.items()}
        assert status == 429 and 0 < int(got["retry-after"]) <= 60, (status, got)
        assert json.loads(raw)["error"].startswith("too many failed authentications from this address")
    assert remote(team_server, "carol").encode(PROMPT)  # other addresses are not held up
    info = team_server.info()
    assert info["lockouts"]["total"] == before["lockouts"]["total"] + 1 and info["lockouts"]["active"] >= 1
    assert info["rejected"]["429"] - before["rejected"].get("429", 0) == 3
    assert info["limits"]["max_auth_failures"] == MAX_AUTH_FAILURES
    assert {r["peer"] for r in info["recent_rejections"][-MAX_AUTH_FAILURES:]} == {"127.0.0.2"}  # the real peer
    for _ in range(50):  # logged once, when the lockout began; its 429s are not logged
        if "locking out 127.0.0.2" in team_server.log_text():
            break
        time.sleep(0.2)
    time.sleep(1.0)
    log = team_server.log_text()
    assert log.count("locking out 127.0.0.2") == 1
    assert log.count("from 127.0.0.2: 401") == MAX_AUTH_FAILURES and "from 127.0.0.2: 429" not in log


def test_a_remote_engine_sends_its_requests_on_one_kept_alive_connection(team_server: TeamServer):
    engine = remote(team_server, "carol")
    for _ in range(3):
        decoding = engine.decode(PROMPT, "", DecodeConfig(max_new_tokens=4))
        assert not decoding.run().cancelled and engine.record(decoding.id)["status"] == "done"
    assert engine.encode(PROMPT) and engine.records()
    assert engine.pool.opened == 1 and engine.pool.reused == 8, vars(engine.pool)
    cancel = threading.Event()
    decoding = engine.decode(PROMPT, SUFFIX, LONG, cancel)
    for _ in decoding:
        cancel.set()  # /v1/cancel goes on a second connection while the decode holds the first
    assert decoding.result.cancelled and decoding.result.stats.iterations < 400
    assert engine.encode(PROMPT) and engine.pool.opened == 2 and len(engine.pool.idle) == 2  # both kept


def test_each_client_has_its_own_limit_on_requests_in_flight(team_server: TeamServer):
    alice, bob = remote(team_server, "alice"), remote(team_server, "bob")
    cancels = [threading.Event() for _ in range(MAX_CLIENT_REQUESTS)]
    running = [alice.decode(PROMPT, SUFFIX, LONG, cancel) for cancel in cancels]
    with pytest.raises(EngineUnavailable, match="429: this client already has 3 requests in flight"):
        alice.decode(PROMPT, "", DecodeConfig(max_new_tokens=4))
    assert not bob.decode(PROMPT, "", DecodeConfig(max_new_tokens=4)).run().cancelled  # others are not held up
    for cancel in cancels:
        cancel.set()
    assert all(decoding.run().cancelled for decoding in running)
    assert not alice.decode(PROMPT, "", DecodeConfig(max_new_tokens=4)).run().cancelled


def test_a_killed_replica_fails_its_decodes_clearly_or_retries_and_is_replaced(team_server: TeamServer):
    """Kill -9 the replica mid-decode: its decodes fail with a clear error (no retry asked) or run
    again on the other replica; decodes on the other replica go on; Ray replaces the replica."""
    decodings, iterators, pids = {}, {}, {}
    for name in CLIENTS[:10]:  # until both replicas run three of them (the router spreads them)
        decodings[name] = remote(team_server, name).decode(PROMPT, SUFFIX, LONG, retry=False)
        iterators[name] = iter(decodings[name])
        next(iterators[name])  # running on its replica, which the start line named
        pids[name] = decodings[name].pid
        if len(set(pids.values())) == 2 and min(list(pids.values()).count(p) for p in set(pids.values())) >= 3:
            break
    names = list(decodings)
    assert len(set(pids.values())) == 2, pids
    victim = pids[names[0]]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    outcomes = {}
    for name, it in iterators.items():
        try:
            for _ in it:
                pass
            outcomes[name] = decodings[name].result
        except EngineUnavailable as exc:
            outcomes[name] = exc
    for name in names:
        if pids[name] == victim:
            assert isinstance(outcomes[name], EngineUnavailable), outcomes[name]
            assert "replica running this decode died" in str(outcomes[name])
        else:
            assert not isinstance(outcomes[name], Exception) and not outcomes[name].cancelled, outcomes[name]
            assert outcomes[name].stats.iterations == 400 and decodings[name].retries == 0
    _, new = team_server.wait_replaced(set(pids.values()))
    print(f"\nkilled replica replaced and serving {time.monotonic() - killed:.1f}s after the kill")

    # with retry (the default): the decode runs again on a live replica and completes
    engine = remote(team_server, "client07")
    decoding = engine.decode(PROMPT, SUFFIX, DecodeConfig(max_new_tokens=200, block_size=1))
    it = iter(decoding)
    next(it)
    first = decoding.pid
    os.kill(first, signal.SIGKILL)
    for _ in it:
        pass
    assert decoding.retries == 1 and decoding.pid != first
    assert not decoding.result.cancelled and decoding.result.stats.iterations == 200
    team_server.wait_replaced(set(pids.values()) | new | {first, decoding.pid})
    for name in CLIENTS[8:12]:  # and the next requests succeed
        assert not remote(team_server, name).decode(PROMPT, "", DecodeConfig(max_new_tokens=8)).run().cancelled
