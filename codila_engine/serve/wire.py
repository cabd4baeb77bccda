"""The team server's messages: what a client sends, and the JSON lines a decode streams back.

A decode request is one JSON object: `prefix`, `suffix`, `settings` (DecodeConfig fields by
their Python names), an optional `id` (the client's name for the request, for /v1/cancel) and
`retry` (may the gateway run it again if its replica dies; default true). The answer is NDJSON:
one `start` line, one `event` line per commit (what Engine.decode yields), then one `result`
line; or an `error` line. Everything a client sends is checked here, so the gateway answers 400
with one sentence, before any decoding, for anything malformed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields

from codila_engine.config import DecodeConfig, OptionError
from codila_engine.decoding.events import Event, Result, Stats

# Bounds on what one request may ask of a shared engine (a larger span or canvas is one user
# holding every replica's memory and time).
MAX_NEW_TOKENS = 4096
MAX_CONTEXT = 32768
MAX_PLACEHOLDER_CHARS = 16
ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
SETTINGS = tuple(f.name for f in fields(DecodeConfig))
STATS = tuple(f.name for f in fields(Stats))


class BadRequest(ValueError):
    """The request is malformed or asks for what this server will not run: HTTP 400."""


@dataclass(frozen=True)
class DecodeRequest:
    prefix: str
    suffix: str
    config: DecodeConfig
    id: str | None = None
    retry: bool = True

    def as_json(self) -> dict:
        """The request as a client sends it (and the gateway passes it to a replica)."""
        return {
            "prefix": self.prefix,
            "suffix": self.suffix,
            "settings": settings_of(self.config),
            "id": self.id,
            "retry": self.retry,
        }


def settings_of(cfg: DecodeConfig) -> dict:
    return {name: getattr(cfg, name) for name in SETTINGS}


def _reject_constant(name: str):
    raise BadRequest(f"the body is not strict JSON ({name} is not a number)")


def parse_object(body: bytes) -> dict:
    """A request body: one JSON object in UTF-8."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise BadRequest("the body nests too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def _text(data: dict, key: str, required: bool) -> str:
    if key not in data:
        if required:
            raise BadRequest(f"{key} is missing")
        return ""
    value = data[key]
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string, got {type(value).__name__}")
    if LONE_SURROGATE.search(value):
        raise BadRequest(f"{key} holds a lone surrogate (not Unicode text)")
    return value


def _unknown(data: dict, known: set[str], what: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadRequest(f"unknown {what}: {', '.join(map(str, unknown[:10]))}")


def parse_config(settings) -> DecodeConfig:
    """DecodeConfig from a request's `settings`, within this server's bounds."""
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise BadRequest(f"settings must be an object, got {type(settings).__name__}")
    _unknown(settings, set(SETTINGS), "setting(s)")
    try:
        cfg = DecodeConfig(**settings)
    except OptionError as exc:
        raise BadRequest(f"settings.{exc.field}: {exc.problem}") from None
    except TypeError as exc:  # a comparison inside DecodeConfig's checks on a mistyped value
        raise BadRequest(f"settings: {exc}") from None
    for name, limit in (("max_new_tokens", MAX_NEW_TOKENS), ("max_context", MAX_CONTEXT), ("steps", MAX_NEW_TOKENS)):
        if getattr(cfg, name) > limit:
            raise BadRequest(f"settings.{name}: this server allows at most {limit}, got {getattr(cfg, name)}")
    if len(cfg.placeholder) > MAX_PLACEHOLDER_CHARS:
        raise BadRequest(f"settings.placeholder: at most {MAX_PLACEHOLDER_CHARS} characters")
    if LONE_SURROGATE.search(cfg.placeholder):
        raise BadRequest("settings.placeholder holds a lone surrogate (not Unicode text)")
    return cfg


def request_id(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise BadRequest("id must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    return value


def parse_decode(data: dict) -> DecodeRequest:
    _unknown(data, {"prefix", "suffix", "settings", "id", "retry"}, "field(s)")
    retry = data.get("retry", True)
    if not isinstance(retry, bool):
        raise BadRequest("retry must be true or false")
    return DecodeRequest(
        prefix=_text(data, "prefix", True),
        suffix=_text(data, "suffix", False),
        config=parse_config(data.get("settings")),
        id=request_id(data.get("id")),
        retry=retry,
    )


def parse_tokenize(data: dict) -> str:
    _unknown(data, {"text"}, "field(s)")
    return _text(data, "text", True)


def parse_cancel(data: dict) -> str:
    _unknown(data, {"id"}, "field(s)")
    rid = request_id(data.get("id"))
    if rid is None:
        raise BadRequest("id is missing")
    return rid


# --- the stream ---------------------------------------------------------------------------
def line(message: dict) -> bytes:
    """One NDJSON line (ASCII: escapes survive any proxy)."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def event_message(event: Event) -> dict:
    return {
        "type": "event",
        "iteration": event.iteration,
        "positions": list(event.positions),
        "ids": list(event.ids),
        "text": event.text,
        "draft": event.draft,
        "masks": list(event.masks),
        "source": event.source,
        "elapsed_s": event.elapsed_s,
    }


def result_message(result: Result, request: str | None = None) -> dict:
    return {
        "type": "result",
        "id": request,
        "text": result.text,
        "ids": list(result.ids),
        "cancelled": result.cancelled,
        "decoder": result.decoder,
        "stats": asdict(result.stats),
    }


def event_of(message: dict) -> Event:
    return Event(
        iteration=int(message["iteration"]),
        positions=tuple(message["positions"]),
        ids=tuple(message["ids"]),
        text=message["text"],
        draft=message["draft"],
        masks=tuple(message["masks"]),
        source=message["source"],
        elapsed_s=float(message["elapsed_s"]),
    )


def stats_of(data: dict) -> Stats:
    return Stats(**{name: data[name] for name in STATS if name in data})


def result_of(message: dict) -> Result:
    return Result(
        text=message["text"],
        ids=list(message["ids"]),
        stats=stats_of(message.get("stats") or {}),
        cancelled=bool(message["cancelled"]),
        decoder=message.get("decoder", ""),
    )
