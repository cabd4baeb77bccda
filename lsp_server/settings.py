"""Server settings from `initializationOptions` and `workspace/didChangeConfiguration`.

Clients send camelCase JSON (`blockSize`, `spanCaps.lineRest`); this module is the one place
that knows the names. Bad values are reported with the key that holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from codila_engine.config import DTYPES, DecodeConfig, OptionError
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
        if not self.margin >= 0:
            raise ValueError(f"infillMargin must be >= 0, got {self.margin!r}")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"need 1 <= infillMinTokens <= infillMaxTokens, got {self.min_tokens}, {self.max_tokens}")
        if not 1 <= self.empty_selection_tokens:
            raise ValueError(f"infillTokens must be >= 1, got {self.empty_selection_tokens!r}")

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
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    caps: SpanCaps = field(default_factory=SpanCaps)
    infill: InfillLimits = field(default_factory=InfillLimits)

    @property
    def model_key(self) -> tuple:
        """What the loaded engine depends on: a change means loading again."""
        return (self.dlm, self.ar, self.device, self.dtype, self.cache_dir)


def _pick(options: dict, keys: dict[str, str]) -> dict[str, Any]:
    return {keys[k]: v for k, v in options.items() if k in keys}


def apply_options(base: Settings, options: Any) -> tuple[Settings, list[str]]:
    """New settings with the client's options on top of `base`, and the keys that were ignored."""
    if options is None:
        return base, []
    if not isinstance(options, dict):
        raise SettingsError(f"codila settings must be a JSON object, got {type(options).__name__}")
    if isinstance(options.get("codila"), dict):  # didChangeConfiguration sends {"codila": {...}}
        options = options["codila"]
    known = set(DECODE_KEYS) | set(_INFILL_KEYS) | set(MODEL_KEYS) | {"spanCaps"}
    ignored = sorted(set(options) - known)
    try:
        decode = base.decode.with_options(**_pick(options, DECODE_KEYS))
        caps_opts = options.get("spanCaps") or {}
        if not isinstance(caps_opts, dict):
            raise SettingsError("spanCaps must be an object like {\"lineRest\": 16}")
        ignored += [f"spanCaps.{k}" for k in sorted(set(caps_opts) - set(_CAP_KEYS))]
        caps = replace(base.caps, **_pick(caps_opts, _CAP_KEYS))
        infill = replace(base.infill, **_pick(options, _INFILL_KEYS))
    except OptionError as exc:
        key = {name: key for key, name in DECODE_KEYS.items()}.get(exc.field, exc.field)
        raise SettingsError(f"invalid codila setting {key!r}: {exc.problem}") from exc
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"invalid codila setting: {exc}") from exc
    models = _pick(options, MODEL_KEYS)
    for name, value in models.items():
        if value is not None and not isinstance(value, str):
            raise SettingsError(f"codila setting {name!r} must be a string, got {value!r}")
    if models.get("dtype") not in (None, "auto", *DTYPES):
        raise SettingsError(f"codila setting 'dtype' must be one of auto, {', '.join(DTYPES)}, got {models['dtype']!r}")
    return replace(base, decode=decode, caps=caps, infill=infill, **models), ignored


def describe(settings: Settings) -> str:
    d = settings.decode
    return (f"decoder={d.decoder} B={d.block_size} mode={d.mode} tau={d.threshold} scope={d.scope} "
            f"conditioning={d.conditioning} caps=" + ",".join(f"{f.name}:{getattr(settings.caps, f.name)}"
                                                             for f in fields(settings.caps)))
