"""Property-based fuzzing of codila-lsp over stdio, with Hypothesis.

One real server (tiny models) gets messages generated from the LSP schema (every method lsprotocol
knows except initialize, shutdown and exit, with params built from its types, or any JSON) and
from the project's own messages (documents with odd text, edits, positions, inline completion,
codila/infill, the infill command, settings, cancels, bursts, a 5 MB document, malformed JSON,
bad envelopes, lowercase headers). After each example: every request id has its response within
ANSWER_BOUND_S, the process is alive, and a rejected configuration left the settings unchanged
and told the user which key was wrong. At the end: no traceback anywhere in the server's log.

CI runs a fixed seed (derandomize) and CODILA_FUZZ_MESSAGES messages (default 2,000);
`CODILA_FUZZ_MESSAGES=10000 pytest tests/test_lsp_fuzz.py -s` is the longer run, and
CODILA_FUZZ_REPORT=path writes its numbers as JSON.
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import json
import os
import time
import typing
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lsp_wire import WireClient
from lsprotocol import types

TARGET = int(os.environ.get("CODILA_FUZZ_MESSAGES", "2000"))
ANSWER_BOUND_S = 30.0
CLIENT_TIMEOUT_S = 1.0  # the server's wait for workspace/applyEdit, which the fuzz client sometimes ignores
ACTIONS_PER_EXAMPLE = (4, 12)
OPTIONS = {
    "device": "cpu",
    "blockSize": 4,
    "maxContext": 256,
    "suggestions": 1,
    "spanCaps": {"lineRest": 4, "blockBody": 4, "nextStatement": 4},
    "infillMinTokens": 2,
    "infillMaxTokens": 8,
    "infillTokens": 4,
}
URIS = ["file:///w/a.py", "file:///w/b%20c.py", "file:///w/%23odd.py", "untitled:Untitled-1"]
BIG_URI = "file:///w/big.py"
BIG_TEXT = (Path(__file__).parents[1] / "lsp_server" / "spans.py").read_text()
BIG_TEXT = (BIG_TEXT * (5_000_000 // len(BIG_TEXT) + 1))[:5_000_000]

# --- the LSP schema ---------------------------------------------------------------------------
SKIPPED = {types.INITIALIZE, types.SHUTDOWN, types.EXIT}  # these end or reset the session
METHODS = sorted(set(types.METHOD_TO_TYPES) - SKIPPED)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
INTEGERS = st.integers(0, 20) | st.integers(-(2**33), 2**33)


@functools.cache
def schema(kind, depth: int = 0) -> st.SearchStrategy:
    """JSON that fits an lsprotocol type (mostly: integers also stray outside uinteger)."""
    if isinstance(kind, typing.ForwardRef):
        kind = kind.__forward_arg__
    if isinstance(kind, str):
        kind = getattr(types, kind, typing.Any)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return INTEGERS
    if kind is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind is str:
        return st.text(max_size=12)
    if kind is type(None):
        return st.none()
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return st.sampled_from([member.value for member in kind])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is typing.Union:
        return st.one_of([schema(arg, depth) for arg in args])
    if depth > 4:
        return st.none()
    if origin in (list, tuple, collections.abc.Sequence):
        return st.lists(schema(args[0] if args else typing.Any, depth + 1), max_size=3)
    if origin in (dict, collections.abc.Mapping):
        return st.dictionaries(st.text(max_size=8), schema(args[1] if args else typing.Any, depth + 1), max_size=3)
    if attrs.has(kind):
        fields = attrs.fields(attrs.resolve_types(kind, globalns=vars(types)))
        key = {f.name: _camel(f.name) for f in fields}
        required = {key[f.name]: schema(f.type, depth + 1) for f in fields if f.default is attrs.NOTHING}
        optional = {key[f.name]: schema(f.type, depth + 1) for f in fields if f.default is not attrs.NOTHING}
        return st.fixed_dictionaries(required, optional=optional)
    return JSON


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def schema_params(method: str) -> st.SearchStrategy:
    params = types.METHOD_TO_TYPES[method][2]
    return st.one_of(schema(params) if params else st.none(), JSON)


# --- the project's own messages ---------------------------------------------------------------
PROGRAMS = [
    "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n\n    def norm(self):\n",
    "import os\nfor i in range(10):\n    if i % 2:\n        print(os.path.join('a', str(i)))\n",
    "name = 'café 😀'\r\nprint(name, '数据')\r\nx = [1,\r\n",
]
PIECES = [
    "def f(x):\n",
    "    return x\n",
    "print(f(1))\n",
    "if x:\n",
    "x = [1,\n",
    "café = '😀'\n",
    "数据 = 1\n",
    "\r\n",
    "\r",
    "\u2028",
    "\x0c",
    "\ud800",
    "\udfff",
    "\t",
    "# comment\n",
    "'''doc\n",
    "@dec\n",
    "(",
    ":",
    "\\\n",
    "",
]
CODE = st.tuples(
    st.sampled_from(PROGRAMS),
    st.lists(st.tuples(st.integers(0, 120), st.sampled_from(PIECES) | st.text(max_size=6)), max_size=4),
).map(lambda p: functools.reduce(lambda text, cut: text[: cut[0]] + cut[1] + text[cut[0] :], p[1], p[0]))
POSITION = st.one_of(
    *[st.fixed_dictionaries({"line": st.integers(0, 6), "character": st.integers(0, 24)})] * 4,
    st.sampled_from(
        [
            {"line": 2**31 - 1, "character": 0},
            {"line": 0, "character": 2**31 - 1},
            {"line": 2**31, "character": 0},
            {"line": -1, "character": 0},
            {"line": "x", "character": 0},
            {"line": 1.5, "character": 0},
            {"line": 0},
            {"line": True, "character": 0},
            None,
        ]
    ),
)
RANGE = st.fixed_dictionaries({"start": POSITION, "end": POSITION})
DOC = st.fixed_dictionaries({"uri": st.sampled_from(URIS)})
VALID_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "blockSize": st.sampled_from([2, 4]),
        "scope": st.integers(1, 10),
        "mode": st.sampled_from(["static", "dynamic"]),
        "threshold": st.floats(0, 2),
        "temperature": st.sampled_from([0, 0.1, 1.0]),
        "topP": st.floats(0.5, 1),
        "seed": st.none() | st.integers(0, 2**40),
        "suggestions": st.integers(1, 3),
        "placeholder": st.text(max_size=3),
        "decoder": st.sampled_from(["auto", "codila", "dlm", "dream"]),
        "conditioning": st.sampled_from(["soft", "top1"]),
        "maxContext": st.sampled_from([128, 256]),
        "dualCache": st.integers(0, 2),
        "infillMargin": st.floats(0, 2),
        "infillMinTokens": st.integers(1, 2),
        "infillMaxTokens": st.integers(4, 8),
        "infillTokens": st.integers(1, 4),
        "spanCaps": st.fixed_dictionaries(
            {}, optional={k: st.integers(1, 4) for k in ("lineRest", "blockBody", "nextStatement")}
        ),
        "steps": st.integers(0, 4),
        "topK": st.integers(0, 50),
        "algTemp": st.sampled_from([0, 0.5]),
    },
)
BAD_SETTINGS = [
    ("seed", "abc"),
    ("placeholder", 5),
    ("fast", "yes"),
    ("blockSize", 0),
    ("blockSize", 4.0),
    ("temperature", -1),
    ("temperature", 1e-300),
    ("topP", 2),
    ("maxContext", 10**9),
    ("suggestions", 9),
    ("spanCaps", {"lineRest": 0}),
    ("spanCaps", 3),
    ("spanCaps", {"blockBody": 10**6}),
    ("infillMargin", "x"),
    ("dtype", "int8"),
    ("dlm", 5),
    ("mode", "turbo"),
    ("threshold", None),
    ("seed", 2**64),
    ("decoder", "\ud800"),
    ("infillMaxTokens", 10**6),
]
MALFORMED = [
    b"{not json",
    b"",
    b"[]",
    b"[1, 2]",
    b"42",
    b'"text"',
    b"null",
    b"\xff\xfe\x00",
    b'{"jsonrpc": "2.0"',
    b'{"jsonrpc": "2.0", "method": 5, "id": 1}',
    b'{"jsonrpc": "1.0", "method": "codila/settings", "id": 2}',
    b'{"method": "codila/settings", "id": 3}',
    b'{"jsonrpc": "2.0", "method": "codila/settings", "id": 1.5}',
    b'{"jsonrpc": "2.0", "method": "codila/settings", "id": null}',
    b'{"jsonrpc": "2.0", "method": "codila/settings", "id": [1]}',
    b'{"jsonrpc": "2.0", "method": "codila/settings", "id": true}',
    b'{"jsonrpc": "2.0", "id": 77, "result": 1}',
    b'{"jsonrpc": "2.0", "id": "codila-x", "error": {"code": 1}}',
    b"[" * 5000 + b"]" * 5000,
]

WEIGHTED = [  # (strategy, weight): how often each kind of action comes
    (
        st.tuples(
            st.just("inline"),
            DOC,
            POSITION,
            st.sampled_from([1, 1, 1, 2, 3, "x"]),
            st.sampled_from([False] * 5 + [True]),
        ),
        4,
    ),
    (
        st.tuples(st.just("schema"), st.sampled_from(METHODS), st.booleans()).flatmap(
            lambda a: st.tuples(st.just(a[0]), st.just(a[1]), schema_params(a[1]), st.just(a[2]))
        ),
        3,
    ),
    (st.tuples(st.just("open"), st.sampled_from(URIS), CODE, st.sampled_from(["python"] * 4 + ["rust"])), 2),
    (
        st.tuples(
            st.just("change"),
            st.sampled_from(URIS),
            st.lists(
                st.fixed_dictionaries({"range": RANGE, "text": st.sampled_from(PIECES)})
                | st.fixed_dictionaries({"text": CODE}),
                max_size=3,
            ),
        ),
        2,
    ),
    (
        st.tuples(st.just("infill"), DOC, RANGE, st.none() | st.integers(1, 8) | st.sampled_from([0, 300, 2**31, "x"])),
        2,
    ),
    (st.tuples(st.just("close"), st.sampled_from(URIS)), 1),
    (st.tuples(st.just("command"), st.sampled_from(URIS), RANGE), 1),
    (st.tuples(st.just("config"), VALID_OPTIONS, st.none() | st.sampled_from(BAD_SETTINGS), st.booleans()), 1),
    (st.tuples(st.just("cancel"), st.integers(0, 5)), 1),
    (st.tuples(st.just("burst"), st.sampled_from(URIS), st.lists(POSITION, min_size=3, max_size=12)), 1),
    (st.tuples(st.just("raw"), st.sampled_from(MALFORMED)), 1),
    (st.tuples(st.just("header"), st.sampled_from(["content-length", "CONTENT-LENGTH", "Content-length"])), 1),
]
ACTION = st.sampled_from([n for n, (_, weight) in enumerate(WEIGHTED) for _ in range(weight)]).flatmap(
    lambda n: WEIGHTED[n][0]
)
BIG_EVERY = 1000  # messages; after each such stretch, a 5 MB document is opened, completed in and closed


class Fuzzer:
    """Plays generated actions against one server and keeps what the checks need."""

    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.recent: list = []  # request ids, newest last
        self.rejected_configs = 0
        self.max_latency = 0.0
        self.big_latency = 0.0  # the slowest trivial request sent while a 5 MB document was being served
        self.bigs = 0

    def request(self, method: str, params, **kw):
        msg_id = self.client.request(method, params, **kw)
        self.recent.append(msg_id)
        return msg_id

    def play(self, actions: list) -> None:
        start = len(self.recent)
        if self.client.messages >= self.bigs * BIG_EVERY:
            self.bigs += 1
            actions = [*actions, ("big", self.bigs * 9973 % 110_000)]
        for action in actions:
            getattr(self, "do_" + action[0])(*action[1:])
        ids = self.recent[start:]
        missing = self.client.wait(ids, ANSWER_BOUND_S)
        assert self.client.alive(), "the server exited"
        assert not missing, f"unanswered requests: {missing}"
        self.max_latency = max([self.max_latency] + [self.client.latency(i) for i in ids])

    def do_schema(self, method, params, as_request) -> None:
        if as_request:
            self.request(method, params)
        else:
            self.client.notify(method, params)

    def do_open(self, uri, text, language) -> None:
        self.client.notify(
            "textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}
        )

    def do_change(self, uri, changes) -> None:
        self.client.notify(
            "textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": changes}
        )

    def do_close(self, uri) -> None:
        self.client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    def do_inline(self, doc, position, trigger, selected) -> None:
        context = {"triggerKind": trigger}
        if selected:
            context["selectedCompletionInfo"] = {
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 1}},
                "text": "x",
            }
        self.request(
            "textDocument/inlineCompletion",
            {"textDocument": doc, "position": position, "context": context, "workDoneToken": f"t{len(self.recent)}"},
        )

    def do_infill(self, doc, rng, max_tokens) -> None:
        self.request(
            "codila/infill",
            {"textDocument": doc, "range": rng, **({} if max_tokens is None else {"maxTokens": max_tokens})},
        )

    def do_command(self, uri, rng) -> None:
        self.request("workspace/executeCommand", {"command": "codila.infillSelection", "arguments": [uri, rng]})

    def do_config(self, options, bad, nested) -> None:
        options = dict(options)
        if bad is not None:
            options[bad[0]] = bad[1]
        before = self.client.call("codila/settings")["result"]
        shown = len(self.client.logs)
        self.client.notify("workspace/didChangeConfiguration", {"settings": {"codila": options} if nested else options})
        after = self.client.call("codila/settings")["result"]
        if bad is not None:
            self.rejected_configs += 1
            assert after == before, f"a rejected configuration changed the settings: {bad}"
            told = [m["message"] for m in self.client.logs[shown:] if "keeping the previous settings" in m["message"]]
            assert len(told) == 1 and bad[0] in told[0], (bad, told)

    def do_cancel(self, back) -> None:
        if self.recent:
            self.client.notify("$/cancelRequest", {"id": self.recent[max(0, len(self.recent) - 1 - back)]})

    def do_burst(self, uri, positions) -> None:
        for position in positions:
            self.do_inline({"uri": uri}, position, 2, False)

    def do_raw(self, body) -> None:
        self.client.send_bytes(body)

    def do_header(self, header) -> None:
        msg_id = self.client.request("codila/settings", msg_id=f"h{len(self.recent)}", header=header)
        self.recent.append(msg_id)

    def do_big(self, line) -> None:
        self.client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": BIG_URI, "languageId": "python", "version": 1, "text": BIG_TEXT}},
        )
        self.do_inline({"uri": BIG_URI}, {"line": line, "character": 0}, 1, False)
        trivial = self.request("codila/settings", None)
        self.client.wait([trivial], ANSWER_BOUND_S)
        self.big_latency = max(self.big_latency, self.client.latency(trivial))
        self.do_close(BIG_URI)


@pytest.fixture(scope="module")
def fuzz_client(tiny_pair):
    client = WireClient("--client-timeout", str(CLIENT_TIMEOUT_S), answer_edits=True)
    client.initialize({"dlm": str(tiny_pair[0]), "ar": str(tiny_pair[1]), **OPTIONS})
    client.wait_for_log("models loaded")
    for uri, text in zip(URIS, PROGRAMS):
        client.notify(
            "textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}
        )
    yield client
    if client.alive():
        client.close()


def test_fuzz_every_request_is_answered_and_the_server_survives(fuzz_client: WireClient):
    fuzzer = Fuzzer(fuzz_client)
    examples = -(-TARGET // ACTIONS_PER_EXAMPLE[0])
    started = time.monotonic()

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(ACTION, min_size=ACTIONS_PER_EXAMPLE[0], max_size=ACTIONS_PER_EXAMPLE[1]))
    def play(actions):
        if fuzz_client.messages < TARGET:
            fuzz_client.answer_edits = len(fuzzer.recent) % 7 != 0  # now and then, leave an applyEdit unanswered
            fuzzer.play(actions)

    play()
    elapsed = time.monotonic() - started
    rss, peak = fuzz_client.memory_kib()
    log = "\n".join(m["message"] for m in fuzz_client.logs) + fuzz_client.stderr_text()
    answers = [fuzz_client.responses[i] for i in fuzzer.recent if i in fuzz_client.responses]
    codes = {}
    for answer in answers:
        code = str(answer["error"]["code"]) if "error" in answer else "result"
        codes[code] = codes.get(code, 0) + 1
    internal = [answer["error"] for answer in answers if answer.get("error", {}).get("code") == -32603]
    slowest = max(fuzzer.recent, key=lambda i: fuzz_client.latency(i) if i in fuzz_client.responses else 0)
    report = {
        "messages": fuzz_client.messages,
        "requests": len(fuzzer.recent),
        "deaths": int(not fuzz_client.alive()),
        "unanswered": len([i for i in fuzzer.recent if i not in fuzz_client.responses]),
        "rejected_configurations": fuzzer.rejected_configs,
        "max_answer_s": round(fuzzer.max_latency, 2),
        "slowest": fuzz_client.methods.get(slowest),
        "trivial_request_beside_5mb_document_s": round(fuzzer.big_latency, 3),
        "rss_mib": round(rss / 1024),
        "peak_rss_mib": round(peak / 1024),
        "seconds": round(elapsed),
        "answers": codes,
        "drafts": len(fuzz_client.drafts),
        "tracebacks": log.count("Traceback"),
    }
    print("\nfuzz:", json.dumps(report))
    report["internal_errors"] = [error["message"] for error in internal]
    report["traceback_excerpts"] = [log[i - 300 : i + 2500] for i in _find_all(log, "Traceback")][:5]
    if os.environ.get("CODILA_FUZZ_REPORT"):
        Path(os.environ["CODILA_FUZZ_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")
    assert fuzz_client.messages >= TARGET
    assert report["deaths"] == 0 and report["unanswered"] == 0
    assert not internal, report["internal_errors"]
    assert report["tracebacks"] == 0, report["traceback_excerpts"]


def _find_all(text: str, word: str) -> list[int]:
    found, at = [], text.find(word)
    while at >= 0:
        found.append(at)
        at = text.find(word, at + 1)
    return found
