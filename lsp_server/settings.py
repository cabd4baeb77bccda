"""Server settings from `initializationOptions` and `workspace/didChangeConfiguration`.

Clients send camelCase JSON (`blockSize`, `spanCaps.lineRest`); the keys, their types, ranges and
defaults are SETTINGS' (codila_engine/config.py). A change is checked as a whole (types, ranges, and
that every span size fits the context) before any of it applies; a bad value is reported with the key
that holds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from codila_engine.config import SETTINGS, DecodeConfig, OptionError, defaults
from lsp_server.positions import LONE_SURROGATE
from lsp_server.spans import SpanCaps

KEYS = {s.key: s for s in SETTINGS if s.key}  # every server setting; a nested one as "spanCaps.lineRest"
_NESTED = {key.split(".")[0] for key in KEYS if "." in key}
_RECORDS = ("decode", "caps", "infill")  # Settings' fields that hold a record; other settings are Settings' own
# client key -> field (public: the eval client sends settings by these names)
DECODE_KEYS = {key: s.name for key, s in KEYS.items() if s.record == "decode"}
MODEL_KEYS = {key: s.name for key, s in KEYS.items() if s.record == "model"}
MAX_CONTEXT = 32768  # canvas tokens; the text handed to the decoder is bounded by this too

_INFILL = defaults("infill")


class SettingsError(ValueError):
    """A configuration value the server cannot use."""


@dataclass(frozen=True)
class InfillLimits:
    """Mask tokens for a selection: its token count times (1 + margin), within bounds."""

    margin: float = _INFILL["margin"]
    min_tokens: int = _INFILL["min_tokens"]
    max_tokens: int = _INFILL["max_tokens"]
    empty_selection_tokens: int = _INFILL["empty_selection_tokens"]  # an empty selection (insertion point)

    def __post_init__(self) -> None:
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"need 1 <= infillMinTokens <= infillMaxTokens, got {self.min_tokens}, {self.max_tokens}")

    def mask_tokens(self, selection_tokens: int) -> int:
        if selection_tokens == 0:
            return self.empty_selection_tokens
        wanted = int(selection_tokens * (1 + self.margin) + 0.999)
        return max(self.min_tokens, min(self.max_tokens, wanted))


@dataclass(frozen=True)
class Settings:
    dlm: str | None = None  # the "model" settings; None: their stand-in (the shipped pair, cuda if available, ...)
    ar: str | None = None
    device: str | None = None
    dtype: str | None = None
    cache_dir: str | None = None
    ar_backend: str = "torch"  # the codila decoder's block decode: torch, or a vLLM engine (models/vllm_ar.py)
    engine_url: str | None = None  # a team server runs the decodes (codila_engine/serve); None: in-process
    engine_token_file: str | None = None
    # each request sets max_new_tokens from its span; 1 here keeps any maxContext >= 2 valid
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(max_new_tokens=1))
    caps: SpanCaps = field(default_factory=lambda: SpanCaps(**defaults("caps")))
    infill: InfillLimits = field(default_factory=InfillLimits)
    suggestions: int = defaults("server")["suggestions"]

    @property
    def model_key(self) -> tuple:
        """What the loaded engine depends on: a change means loading again. Without model
        folders, the decoder picks the default models (the AR for fim and auto; the default DLM
        for dlm and dream; both for codila)."""
        default_models = (
            None
            if (self.dlm or self.ar)
            else {"dlm": "dlm", "dream": "dlm", "codila": "codila"}.get(self.decode.decoder)
        )
        return (  # DecodeWorker's order
            self.dlm,
            self.ar,
            self.device,
            self.dtype,
            self.cache_dir,
            default_models,
            self.engine_url,
            self.engine_token_file,
            self.ar_backend,
        )


def _invalid(key: str, problem: str, value: Any) -> SettingsError:
    return SettingsError(f"invalid codila setting {key!r}: {problem}, got {value!r}")


def _known(options: Any) -> tuple[dict[str, Any], list[str]]:
    """The settings a client sent, by key ("spanCaps.lineRest" for a nested one), and the unknown
    keys; didChangeConfiguration sends them as {"codila": {...}}."""
    if isinstance(options, dict) and "codila" in options:
        options = options["codila"]
    if not isinstance(options, dict):
        raise SettingsError(f"codila settings must be a JSON object, got {type(options).__name__}")
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if key in _NESTED:
            if not isinstance(value, dict):
                example = next({k.split(".")[1]: s.default} for k, s in KEYS.items() if k.startswith(key + "."))
                raise SettingsError(f"{key} must be an object like {json.dumps(example)}")
            flat.update((f"{key}.{k}", v) for k, v in value.items())
        else:
            flat[key] = value
    return {k: v for k, v in flat.items() if k in KEYS}, sorted(k for k in flat if k not in KEYS)


def _check_spans_fit(settings: Settings) -> None:
    """Every mask count a setting asks for must fit the context, or each request would fail."""
    spans = {key: getattr(settings.caps, s.name) for key, s in KEYS.items() if s.record == "caps"}
    spans |= {"infillMaxTokens": settings.infill.max_tokens, "infillTokens": settings.infill.empty_selection_tokens}
    for key, tokens in spans.items():
        try:
            settings.decode.with_options(max_new_tokens=tokens)
        except OptionError:
            d = settings.decode
            raise SettingsError(
                f"invalid codila setting {key!r}: {tokens} tokens do not fit maxContext "
                f"{d.max_context} (a span, in whole blocks of {d.block_size}, must stay below it)"
            ) from None


def apply_options(base: Settings, options: Any) -> tuple[Settings, list[str]]:
    """New settings with the client's options on top of `base`, and the keys that were ignored.

    Raises SettingsError, naming the key, if any value is wrong: then nothing applies."""
    if options is None:
        return base, []
    known, ignored = _known(options)
    changes: dict[str, dict[str, Any]] = {record: {} for record in ("model", "server", *_RECORDS)}
    for key, value in known.items():
        s = KEYS[key]
        if isinstance(value, str) and LONE_SURROGATE.search(value):
            raise _invalid(key, "must be valid Unicode text (it holds a lone surrogate)", value)
        if problem := s.problem(value):
            raise _invalid(key, problem, value)
        changes[s.record][s.name] = value
    try:
        settings = replace(
            base,
            **changes["model"],
            **changes["server"],
            **{record: replace(getattr(base, record), **changes[record]) for record in _RECORDS},
        )
    except OptionError as exc:  # a relation between decoding settings
        key = {name: key for key, name in DECODE_KEYS.items()}.get(exc.field, exc.field)
        raise SettingsError(f"invalid codila setting {key!r}: {exc.problem}") from None
    except ValueError as exc:
        raise SettingsError(f"invalid codila settings: {exc}") from None
    if settings.decode.max_context > MAX_CONTEXT:
        raise _invalid("maxContext", f"must be at most {MAX_CONTEXT} tokens", settings.decode.max_context)
    _check_spans_fit(settings)
    return settings, ignored


def as_options(settings: Settings) -> dict[str, Any]:
    """The settings in force, by the client's names (what `codila/settings` answers)."""
    options: dict[str, Any] = {}
    for key, s in KEYS.items():
        holder = getattr(settings, s.record) if s.record in _RECORDS else settings
        parent, _, name = key.rpartition(".")
        (options.setdefault(parent, {}) if parent else options)[name] = getattr(holder, s.name)
    return options


def describe(settings: Settings) -> str:
    d = settings.decode
    return (
        f"decoder={d.decoder} B={d.block_size} mode={d.mode} tau={d.threshold} scope={d.scope} "
        f"conditioning={d.conditioning} suggestions={settings.suggestions} caps="
        + ",".join(f"{f.name}:{getattr(settings.caps, f.name)}" for f in fields(settings.caps))
    )
