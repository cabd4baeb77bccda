"""JSON-RPC over stdio, checked before pygls sees a message: every request gets one answer.

pygls 2.1 (checked against 2.1.1) leaves a client waiting in several cases: it logs and drops
a request whose params do not fit the LSP types (`json_rpc.py`, `structure_message` raises
inside `json.loads`), a message whose `jsonrpc` is not "2.0", and every request after
`shutdown`; it reads only a header spelled exactly `Content-Length: `, so a lowercase one loses
that message and all later ones; and it logs a traceback for every error a handler raises.

Here the reader thread frames and parses each message (headers case-insensitively, sizes
bounded, large bodies parsed off the event loop), and `Protocol.receive` is the one place that
checks a message before pygls dispatches it:

- not JSON: -32700; not a JSON-RPC 2.0 request (bad `jsonrpc`, `method` or `id`, a request
  sent to a notification method, a request after `shutdown`): -32600; an unknown method:
  -32601; a request before `initialize`: -32002; params that do not fit the method's LSP type
  (or the parser registered for a custom method): -32602 naming the field, e.g.
  `params.position.line: expected an integer`.
- a bad notification cannot be answered: it is dropped with one warning line (so are notebook
  notifications: codila does not advertise notebook sync).
- a response is taken only for a request the server sent and still waits on.

Logging: one warning line per rejected message or client error a handler raises, one error
line for a deliberate server error, a traceback only for an unexpected exception (a bug).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, BinaryIO, TypeGuard

import attrs
import cattrs
import cattrs.gen
from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcMethodNotFound,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.io_ import StdoutWriter
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, LanguageServerProtocol, default_converter
from pygls.protocol.json_rpc import JsonRPCResponseMessage
from pygls.protocol.language_server import lsp_method

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 2**20
MAX_HEADER_LINE = 4096
CLIENT_ERRORS = (
    JsonRpcParseError,
    JsonRpcInvalidRequest,
    JsonRpcMethodNotFound,
    JsonRpcInvalidParams,
    JsonRpcServerNotInitialized,
)
_BEFORE_INITIALIZE = {types.INITIALIZE, types.EXIT}


class FrameError(Exception):
    """A message whose header cannot be read; its body (if any) was skipped."""


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next message body, or None at the end of the input. Header names are
    case-insensitive (`content-length:` counts); other headers are ignored."""
    length: int | None = None
    seen_header = False
    while True:
        line = stream.readline(MAX_HEADER_LINE)
        if not line:
            return None
        if line.strip():
            seen_header = True
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                value = value.strip()
                length = int(value) if value.isdigit() else -1
            continue
        if not seen_header:
            continue  # stray blank lines between messages
        if length is None or length < 0:
            raise FrameError("a message header without a valid Content-Length")
        if length > MAX_MESSAGE_BYTES:
            _skip(stream, length)
            raise FrameError(f"a message of {length} bytes (the limit is {MAX_MESSAGE_BYTES})")
        body = stream.read(length)
        return body if len(body) == length else None


def _skip(stream: BinaryIO, length: int) -> None:
    while length > 0:
        chunk = stream.read(min(length, 2**20))
        if not chunk:
            return
        length -= len(chunk)


def read_message(stream: BinaryIO) -> Any:
    """The next message as parsed JSON; raises JsonRpcParseError / JsonRpcInvalidRequest for one
    that cannot be read, EOFError at the end of the input."""
    try:
        body = read_frame(stream)
    except FrameError as exc:
        raise JsonRpcInvalidRequest(str(exc)) from None
    if body is None:
        raise EOFError
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise JsonRpcParseError(f"the message is not JSON: {exc}") from None


def strict_converter() -> cattrs.Converter:
    """pygls' converter, except that a value must have the JSON type its field asks for: cattrs
    would turn 1.5 into a line 1 and 5 into a uri "5", and report null for an object as
    "'NoneType' object is not subscriptable" on each of its fields."""
    converter = default_converter()
    for kind, name in ((int, "an integer"), (str, "a string"), (bool, "true or false"), (float, "a number")):
        converter.register_structure_hook(kind, _strict(kind, name))
    converter.register_structure_hook_factory(attrs.has, lambda cls: _object(cls, converter))
    return converter


def _strict(kind: type, name: str) -> Callable[[Any, Any], Any]:
    """The hook for a JSON scalar type; it also serves the enums built on it (IntEnum, str enums)."""
    accepted: Any = (int, float) if kind is float else kind

    def structure(value: Any, target: type) -> Any:
        if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
            raise TypeError(f"expected {name}, got {_json_type(value)}")
        return target(value) if target is not kind else float(value) if kind is float else value

    return structure


def _object(cls: type, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """lsprotocol's structuring of an attrs class (camelCase keys), for JSON objects only."""
    renamed: dict[str, Any] = {a.name: cattrs.gen.override(rename=_camel(a.name)) for a in attrs.fields(cls)}
    fields: Callable[[Any, Any], Any] = cattrs.gen.make_dict_structure_fn(cls, converter, **renamed)

    def structure(value: Any, kind: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {_json_type(value)}")
        return fields(value, kind)

    return structure


def _camel(name: str) -> str:
    """lsprotocol's field name as JSON spells it: text_document -> textDocument, from_ -> from."""
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def describe(exc: Exception) -> str:
    """A structuring error by the client's field names: `params.position.line: expected an integer`."""
    if not isinstance(exc, cattrs.BaseValidationError):
        return str(exc) or type(exc).__name__
    problems = []
    for line in cattrs.transform_error(exc, format_exception=_problem):
        problem, _, path = line.rpartition(" @ ")
        path = ".".join(_camel(part) for part in path.removeprefix("$").removeprefix(".").split("."))
        problems.append(f"{path or 'the message'}: {problem}")
    return "; ".join(problems)


def _problem(exc: BaseException, _: Any) -> str:
    if isinstance(exc, KeyError):
        return "is missing"
    return str(exc) or type(exc).__name__


def _answer_id(message: Any) -> tuple[bool, Any]:
    """Whether a message must be answered, and with which id (null when it has no usable one)."""
    if not isinstance(message, dict):
        return True, None
    if "method" not in message or "id" not in message:
        return False, None  # a notification, or a response
    return True, message["id"] if _valid_id(message["id"]) else None


def _valid_id(value: Any) -> TypeGuard[int | str]:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _is_notification(method: str) -> bool:
    kinds = types.METHOD_TO_TYPES.get(method)
    return kinds is not None and kinds[1] is None


class Protocol(LanguageServerProtocol):
    """pygls' protocol with the checks above; `custom` and `commands` hold the parsers of custom
    requests' params and of commands' arguments, keyed by method and command."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.custom: dict[str, Callable[[Any], Any]] = {}
        self.commands: dict[str, Callable[[Any], Any]] = {}
        self._methods: dict[Any, str] = {}  # request id -> method, for the log line of its answer

    # --- incoming messages --------------------------------------------------------------
    def receive(self, message: Any) -> None:
        """Check one parsed message and hand it to pygls, or answer (or log) why not."""
        try:
            checked = self._check(message)
        except JsonRpcException as exc:
            self.reject(message, exc)
            return
        if checked is None:
            return
        answer, msg_id = _answer_id(message)
        if answer:
            self._methods[msg_id] = message["method"]
        try:
            self.handle_message(checked)
        except Exception:  # a bug: the request still gets its answer
            log.exception("handling %r failed", message["method"])
            if answer:
                self._methods.pop(msg_id, None)
                self.send_error(msg_id, JsonRpcInternalError("internal error"))

    def reject(self, message: Any, error: JsonRpcException) -> None:
        """One warning line, and the error response if the message was a request."""
        answer, msg_id = _answer_id(message)
        method = message.get("method") if isinstance(message, dict) else None
        what = f"request {msg_id!r}" if answer else "notification" if method is not None else "message"
        log.warning("rejected %s%s: %s", what, f" {method!r}" if isinstance(method, str) else "", error.message)
        if answer:
            self.send_error(msg_id, error)

    def send_error(self, msg_id: Any, error: JsonRpcException) -> None:
        """An error response; `"id": null` when the request's id could not be read (lsprotocol
        would leave the id out)."""
        body = {"code": error.code, "message": error.message, **({} if error.data is None else {"data": error.data})}
        self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": body})

    def _check(self, message: Any) -> Any:
        """The message as pygls wants it (None: nothing to dispatch); raises JsonRpcException."""
        if not isinstance(message, dict):
            raise JsonRpcInvalidRequest(f"a message must be a JSON object, got {_json_type(message)}")
        if "method" not in message:
            return self._response(message)
        method, request = message["method"], "id" in message
        if message.get("jsonrpc") != "2.0":
            raise JsonRpcInvalidRequest('"jsonrpc" must be "2.0"')
        if not isinstance(method, str):
            raise JsonRpcInvalidRequest('"method" must be a string')
        if request and not _valid_id(message["id"]):
            raise JsonRpcInvalidRequest('"id" must be an integer or a string')
        if self._shutdown and method != types.EXIT:
            raise JsonRpcInvalidRequest("the server is shutting down (shutdown was received)")
        if request and _is_notification(method):
            raise JsonRpcInvalidRequest(f"{method} is a notification: send it without an id")
        if not request and method in types.METHOD_TO_TYPES and not _is_notification(method):
            raise JsonRpcInvalidRequest(f"{method} is a request: it needs an id")
        if request and method not in self.fm.features and method not in self.fm.builtin_features:
            raise JsonRpcMethodNotFound(f"unknown method {method!r}")
        if method.startswith("notebookDocument/"):  # not advertised; pygls' handlers fail on unknown notebooks
            raise JsonRpcMethodNotFound("codila does not sync notebook documents")
        if self._workspace is None and method not in _BEFORE_INITIALIZE:
            raise JsonRpcServerNotInitialized("the server is not initialized: send initialize first")
        return self._structure(message, method, request)

    def _structure(self, message: dict, method: str, request: bool) -> Any:
        """The message with params of its type, or of the parser registered for the method."""
        parse, kind = self.custom.get(method), self.get_message_type(method)
        if parse is not None or kind is None:  # kind None: a custom method, or a notification pygls ignores
            params = parse(message.get("params")) if parse else message.get("params")
            if request:
                return JsonRPCRequestMessage(id=message["id"], method=method, jsonrpc="2.0", params=params)
            return JsonRPCNotification(method=method, jsonrpc="2.0", params=params)
        try:
            checked = self._converter.structure(message, kind)
        except Exception as exc:  # structuring depends on the message alone: any failure is the client's
            raise JsonRpcInvalidParams(describe(exc)) from None
        if method == types.WORKSPACE_EXECUTE_COMMAND and checked.params.command in self.commands:
            checked.params.arguments = [self.commands[checked.params.command](checked.params.arguments)]
        return checked

    def _response(self, message: dict) -> Any:
        """A response to a request the server sent (None: dropped, with a warning)."""
        msg_id = message.get("id")
        future = self._request_futures.get(msg_id) if _valid_id(msg_id) else None
        if future is None or future.done() or msg_id not in self._result_types:
            log.warning("ignored a response to id %r: the server is not waiting for it", msg_id)
            return None
        kind = self._result_types.pop(msg_id) or JsonRPCResponseMessage
        try:
            return self._converter.structure(message, types.ResponseErrorMessage if "error" in message else kind)
        except Exception as exc:
            self._request_futures.pop(msg_id, None)
            error = JsonRpcInvalidParams(f"malformed response from the client: {describe(exc)}")
            log.warning("response %r: %s", msg_id, error.message)
            future.set_exception(error)
            return None

    # --- answers ------------------------------------------------------------------------
    def _send_handler_result(self, future, *, msg_id) -> None:
        """pygls' answer to a handled request, except for the log: pygls logs a traceback for
        every error; here only an unexpected exception (a bug) gets one."""
        method = self._methods.pop(msg_id, "?")
        error = None if future.cancelled() else future.exception()
        if not isinstance(error, JsonRpcException):
            super()._send_handler_result(future, msg_id=msg_id)
            return
        self._request_futures.pop(msg_id, None)
        level = logging.WARNING if isinstance(error, CLIENT_ERRORS) else logging.ERROR
        log.log(level, "request %r %r failed: %s", msg_id, method, error.message)
        self.send_error(msg_id, error)

    def _check_handler_result(self, future) -> None:
        """A notification handler's error: one line, or a traceback for an unexpected exception."""
        error = None if future.cancelled() else future.exception()
        if isinstance(error, JsonRpcException):
            log.warning("notification failed: %s", error.message)
        elif error is not None:
            log.error("notification handler failed", exc_info=error)

    # --- requests to the client ---------------------------------------------------------
    async def ask(self, method: str, params: Any, timeout: float) -> Any:
        """Send a request to the client and wait at most `timeout` seconds for its answer
        (TimeoutError after that; a late answer is then ignored)."""
        msg_id = f"codila-{uuid.uuid4().hex[:12]}"
        try:
            return await asyncio.wait_for(self.send_request_async(method, params, msg_id=msg_id), timeout)
        finally:
            self._request_futures.pop(msg_id, None)
            self._result_types.pop(msg_id, None)

    # --- documents live in lsp_server.documents, not in pygls' workspace -----------------
    def _to_handler(self, method: str, params: Any):
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        yield from self._to_handler(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        yield from self._to_handler(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        yield from self._to_handler(types.TEXT_DOCUMENT_DID_CLOSE, params)


async def serve(protocol: Protocol, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Read messages on a daemon thread and hand each to `protocol.receive` on the event loop,
    in order, until the input ends."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    protocol.set_writer(StdoutWriter(stdout))
    # a file of its own: the interpreter closes sys.stdin at exit, which aborts the process when
    # this thread is blocked reading it
    stream = open(stdin.fileno(), "rb", closefd=False)

    def read() -> None:
        try:
            while True:
                try:
                    message = read_message(stream)
                except EOFError:
                    break
                except JsonRpcException as exc:
                    loop.call_soon_threadsafe(protocol.reject, None, exc)
                    continue
                loop.call_soon_threadsafe(protocol.receive, message)
            loop.call_soon_threadsafe(ended.set)
        except RuntimeError:  # the event loop is closed: the server has exited
            pass

    threading.Thread(target=read, name="codila-read", daemon=True).start()
    await ended.wait()
