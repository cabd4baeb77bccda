"""Server settings from `initializationOptions` and `workspace/didChangeConfiguration`.

Clients send camelCase JSON (`blockSize`, `spanCaps.lineRest`); this module is the one place
that knows the names. A change is checked as a whole (types, ranges, and that every span size
fits the context) before any of it applies; a bad value is reported with the key that holds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from codila_engine.config import DTYPES, DecodeConfig, OptionError
from lsp_server.positions import LONE_SURROGATE
from lsp_server.spans import SpanCaps

# client key -> DecodeConfig field (public: the eval client sends settings by these names)
DECODE_KEYS = {
    "decoder": "decoder",
    "blockSize": "block_size",
    "mode": "mode",
    "threshold": "threshold",
    "scope": "scope",
    "conditioning": "conditioning",
    "tokensPerStep": "tokens_per_step",
    "temperature": "temperature",
    "topP": "top_p",
    "seed": "seed",
    "maxContext": "max_context",
    "placeholder": "placeholder",
    "fast": "fast",
    "dualCache": "dual_cache",
    "steps": "steps",
    "eps": "eps",
    "algTemp": "alg_temp",
    "topK": "top_k",
}
_CAP_KEYS = {"lineRest": "line_rest", "blockBody": "block_body", "nextStatement": "next_statement"}
_INFILL_KEYS = {
    "infillMargin": "margin",
    "infillMinTokens": "min_tokens",
    "infillMaxTokens": "max_tokens",
    "infillTokens": "empty_selection_tokens",
}
MODEL_KEYS = {"dlm": "dlm", "ar": "ar", "device": "device", "dtype": "dtype", "cacheDir": "cache_dir"}
_KNOWN = {*DECODE_KEYS, *_INFILL_KEYS, *MODEL_KEYS, "spanCaps", "suggestions"}
MAX_CONTEXT = 32768  # canvas tokens; the text handed to the decoder is bounded by this too
MAX_SUGGESTIONS = 5
MAX_MARGIN = 100.0


class SettingsError(ValueError):
    """A configuration value the server cannot use."""


@dataclass(frozen=True)
class InfillLimits:
    """Mask tokens for a selection: its token count times (1 + margin), within bounds."""

    margin: float = 0.5
    min_tokens: int = 8
    max_tokens: int = 256
    empty_selection_tokens: int = 64  # an empty selection (insertion point) gets this many

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
    dlm: str | None = None  # model folders; None = the shipped pair, else the default model
    ar: str | None = None
    device: str | None = None
    dtype: str | None = None  # float32, bfloat16, float16; None = auto
    cache_dir: str | None = None  # where the default model is prepared; None = the usual cache
    # each request sets max_new_tokens from its span; 1 here keeps any maxContext >= 2 valid
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(max_new_tokens=1))
    caps: SpanCaps = field(default_factory=SpanCaps)
    infill: InfillLimits = field(default_factory=InfillLimits)
    suggestions: int = 1  # inline items per request, decoded with seeds seed, seed + 1, ...

    @property
    def model_key(self) -> tuple:
        """What the loaded engine depends on: a change means loading again. Without model
        folders, the decoder picks the default models (the AR for fim and auto; the default DLM
        for dlm and dream; both for codila)."""
        defaults = (
            None
            if (self.dlm or self.ar)
            else {"dlm": "dlm", "dream": "dlm", "codila": "codila"}.get(self.decode.decoder)
        )
        return (self.dlm, self.ar, self.device, self.dtype, self.cache_dir, defaults)


def _need(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise SettingsError(f"invalid codila setting {key!r}: {what}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unwrap(options: Any) -> dict:
    """The codila object of a configuration: didChangeConfiguration sends {"codila": {...}}."""
    if isinstance(options, dict) and "codila" in options:
        options = options["codila"]
    if not isinstance(options, dict):
        raise SettingsError(f"codila settings must be a JSON object, got {type(options).__name__}")
    caps = options.get("spanCaps", {})
    if not isinstance(caps, dict):
        raise SettingsError('spanCaps must be an object like {"lineRest": 16}')
    for key, value in [*options.items(), *(("spanCaps." + k, v) for k, v in caps.items())]:
        if key in _KNOWN or key.removeprefix("spanCaps.") in _CAP_KEYS:
            _need(
                not (isinstance(value, str) and LONE_SURROGATE.search(value)),
                key,
                "must be valid Unicode text (it holds a lone surrogate)",
                value,
            )
    return options


def _models(options: dict) -> dict[str, str | None]:
    models = {}
    for key, name in MODEL_KEYS.items():
        if key in options:
            _need(options[key] is None or isinstance(options[key], str), key, "must be a string or null", options[key])
            models[name] = options[key]
    _need(
        models.get("dtype") in (None, "auto", *DTYPES),
        "dtype",
        f"must be one of auto, {', '.join(DTYPES)}",
        models.get("dtype"),
    )
    return models


def _decode(base: DecodeConfig, options: dict) -> DecodeConfig:
    try:
        decode = base.with_options(**{name: options[key] for key, name in DECODE_KEYS.items() if key in options})
    except OptionError as exc:
        key = {name: key for key, name in DECODE_KEYS.items()}.get(exc.field, exc.field)
        raise SettingsError(f"invalid codila setting {key!r}: {exc.problem}") from None
    _need(decode.max_context <= MAX_CONTEXT, "maxContext", f"must be at most {MAX_CONTEXT} tokens", decode.max_context)
    return decode


def _caps(base: SpanCaps, options: dict) -> SpanCaps:
    for key in [key for key in _CAP_KEYS if key in options]:
        _need(_is_int(options[key]) and options[key] >= 1, f"spanCaps.{key}", "must be an integer >= 1", options[key])
    return replace(base, **{name: options[key] for key, name in _CAP_KEYS.items() if key in options})


def _infill(base: InfillLimits, options: dict) -> InfillLimits:
    for key in [key for key in _INFILL_KEYS if key in options]:
        value = options[key]
        if key == "infillMargin":
            _need(
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and 0 <= value <= MAX_MARGIN
                and math.isfinite(value),
                key,
                f"must be a number in [0, {MAX_MARGIN:g}]",
                value,
            )
        else:
            _need(_is_int(value) and value >= 1, key, "must be an integer >= 1", value)
    changes = {name: options[key] for key, name in _INFILL_KEYS.items() if key in options}
    try:
        return replace(base, **changes)
    except ValueError as exc:
        raise SettingsError(f"invalid codila settings: {exc}") from None


def _check_spans_fit(settings: Settings) -> None:
    """Every mask count a setting asks for must fit the context, or each request would fail."""
    spans = {f"spanCaps.{key}": getattr(settings.caps, name) for key, name in _CAP_KEYS.items()}
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
    options = _unwrap(options)
    caps = options.get("spanCaps", {})
    ignored = sorted(set(options) - _KNOWN) + [f"spanCaps.{k}" for k in sorted(set(caps) - set(_CAP_KEYS))]
    suggestions = options.get("suggestions", base.suggestions)
    _need(
        _is_int(suggestions) and 1 <= suggestions <= MAX_SUGGESTIONS,
        "suggestions",
        f"must be an integer from 1 to {MAX_SUGGESTIONS}",
        suggestions,
    )
    settings = replace(
        base,
        decode=_decode(base.decode, options),
        caps=_caps(base.caps, caps),
        infill=_infill(base.infill, options),
        suggestions=suggestions,
        **_models(options),
    )
    _check_spans_fit(settings)
    return settings, ignored


def as_options(settings: Settings) -> dict[str, Any]:
    """The settings in force, by the client's names (what `codila/settings` answers)."""
    options: dict[str, Any] = {key: getattr(settings, name) for key, name in MODEL_KEYS.items()}
    options |= {key: getattr(settings.decode, name) for key, name in DECODE_KEYS.items()}
    options |= {key: getattr(settings.infill, name) for key, name in _INFILL_KEYS.items()}
    options["spanCaps"] = {key: getattr(settings.caps, name) for key, name in _CAP_KEYS.items()}
    options["suggestions"] = settings.suggestions
    return options


def describe(settings: Settings) -> str:
    d = settings.decode
    return (
        f"decoder={d.decoder} B={d.block_size} mode={d.mode} tau={d.threshold} scope={d.scope} "
        f"conditioning={d.conditioning} suggestions={settings.suggestions} caps="
        + ",".join(f"{f.name}:{getattr(settings.caps, f.name)}" for f in fields(settings.caps))
    )
