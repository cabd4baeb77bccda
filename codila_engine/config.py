"""Every user setting, declared once (SETTINGS), and DecodeConfig, the decoding record that the CLI,
the server and the benchmarks all fill.

From SETTINGS come the command-line flags (options.py), the language server's settings and their
checks (lsp_server/settings.py); tests/test_settings_schema.py holds the VS Code extension's
settings, the Neovim defaults and the README's table to it. A new setting is one entry here plus
the field of the record that holds it (DecodeConfig, or lsp_server.settings.Settings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, TypeGuard

DECODERS = ("auto", "codila", "dlm", "dream", "fim")
MODES = ("static", "dynamic")
CONDITIONINGS = ("soft", "top1")
DTYPES = ("float32", "bfloat16", "float16")  # torch dtypes for weights and compute
MIN_TEMPERATURE = 1e-4  # a positive temperature below this overflows float32 logits when divided


def is_int(value: object) -> TypeGuard[int]:
    """An integer, and not a bool: JSON's true is no number here."""
    return isinstance(value, int) and not isinstance(value, bool)


_KINDS: dict[type, tuple[Callable[[Any], bool], str]] = {  # what a setting's type accepts, and how to say it
    int: (is_int, "an integer"),
    float: (lambda v: is_int(v) or isinstance(v, float), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
}


@dataclass(frozen=True)
class Setting:
    """One user setting: its type, default, range and help, and the names it goes by."""

    name: str  # the field of its record; the CLI flag is --name-with-dashes
    record: str  # what holds it: decode (DecodeConfig); in the server's Settings: model and server (its own
    # fields), caps (Settings.caps, a SpanCaps), infill (Settings.infill); the CLI has the model and decode flags
    type: type  # int, float, str or bool
    default: Any
    help: str  # what it is, naming its unit
    unit: str = ""  # shown after the default: "4 tokens"
    rule: str = ""  # the range in words, after "must be"
    ge: float | None = None  # bounds, as in JSON schema: minimum, exclusiveMinimum, maximum, exclusiveMaximum
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    zero: str = ""  # 0 is allowed outside the bounds and stands for this ("exact")
    none: str = ""  # null is allowed and stands for this ("cuda if available")
    key: str | None = None  # the server setting (a dot for a nested one); None: command line only
    cli: bool = True  # a model or decode setting is a flag of `codila generate` / `infill` and the eval too
    applies: tuple[str, ...] = ()  # (decoder,) or (decoder, mode) it is for; unset on the command line unless given
    metavar: str | tuple[str, ...] | None = None  # a tuple takes that many values

    @property
    def shown(self) -> str:
        """The default as help texts, the editors and the README show it."""
        if self.default is None:
            return self.none
        if self.zero and self.default == 0:
            return f"0 = {self.zero}"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return f"{self.default} {self.unit}".strip()

    def in_range(self, value: Any) -> bool:
        """Finite and within the bounds (the stand-ins 0 and null are not)."""
        return (
            (not isinstance(value, float) or math.isfinite(value))
            and (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` ("must be ..."), or None."""
        if value is None and self.none:
            return None
        accepts, noun = _KINDS[self.type]
        if not accepts(value):
            return f"must be {noun}" + (" or null" if self.none else "")
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if not (self.zero and value == 0) and not self.in_range(value):
            zero, null = f" (0: {self.zero})" if self.zero else "", f" (or null: {self.none})" if self.none else ""
            return f"must be {self.rule}{zero}{null}"
        return None


S = Setting
# fmt: off
SETTINGS = (
    # the models: which load, and on what; the server loads them again when one of these changes
    S("dlm", "model", str, None, key="dlm", help="Dream-format DLM folder",
      none="the pair in codila_engine/assets/ if installed, else none: the default model is an AR alone"),
    S("ar", "model", str, None, key="ar", help="Qwen3 or Qwen2 AR folder",
      none="the pair in codila_engine/assets/ if installed, else the default model, Qwen2.5-Coder-0.5B-Instruct, "
      "prepared on first use"),
    S("device", "model", str, None, key="device", help="torch device: cpu, cuda, cuda:N", none="cuda if available"),
    S("dtype", "model", str, None, key="dtype", choices=("auto", *DTYPES), none="auto",
      help="weights and compute dtype; auto: $CODILA_DTYPE if set, else bfloat16 on CUDA and on CPUs where it "
      "is measured faster, float32 otherwise"),
    S("cache_dir", "model", str, None, key="cacheDir", help="where the default model is prepared",
      none="$CODILA_CACHE_DIR, else $XDG_CACHE_HOME/codila, else ~/.cache/codila"),
    S("ar_backend", "model", str, "torch", key="arBackend", choices=("torch", "vllm"),
      help="where the codila decoder's local AR decodes its blocks: torch (in this process) or vllm (one vLLM "
      "engine fed with prompt embeddings; pip install 'codila[vllm]')"),
    S("engine_url", "model", str, None, key="engineUrl", cli=False, none="none: the models load in this process",
      help="URL of a codila team server (`codila serve`), http(s)://HOST:PORT; decodes run there, with its models"),
    S("engine_token_file", "model", str, None, key="engineTokenFile", cli=False,
      none="$CODILA_TOKEN_FILE, else the token in $CODILA_TOKEN",
      help="file holding the token for engineUrl (the token itself is never a setting or a flag)"),
    S("think_ids", "model", int, None, metavar=("OPEN", "CLOSE"), none="read from its tokenizer",
      help="the AR's <think> and </think> token ids"),
    # decoding: DecodeConfig's fields
    S("decoder", "decode", str, "auto", key="decoder", choices=DECODERS,
      help="codila (diffusion + local AR), dlm (plain diffusion), dream (Dream's own sampler), fim (plain "
      "left-to-right FIM by the AR), or auto: codila for a DLM + AR pair, fim for an AR alone, dlm for a DLM alone"),
    S("block_size", "decode", int, 4, key="blockSize", ge=1, metavar="B", unit="tokens",
      help="tokens the AR decodes per block", rule="a whole number of tokens >= 1"),
    S("mode", "decode", str, "static", key="mode", choices=MODES,
      help="static: commit a whole block; dynamic: its longest confident prefix"),
    S("threshold", "decode", float, 0.3, key="threshold", ge=0, metavar="TAU", unit="nats",
      applies=("codila", "dynamic"), help="dynamic mode: the mean entropy a committed prefix may have",
      rule="a finite mean entropy >= 0 (nats)"),
    S("scope", "decode", int, 10, key="scope", ge=1, unit="blocks",
      help="candidate blocks nearest the decoding frontier", rule="a whole number of blocks >= 1"),
    S("conditioning", "decode", str, "soft", key="conditioning", choices=CONDITIONINGS,
      help="how DLM marginals condition the AR; soft: marginals x AR embeddings, top1: the DLM's argmax"),
    S("tokens_per_step", "decode", int, 0, key="tokensPerStep", ge=1, zero="the block size", metavar="K",
      applies=("dlm",), help="the dlm decoder: tokens committed per iteration", rule="a whole number of tokens >= 1"),
    S("max_new_tokens", "decode", int, 64, ge=1, metavar="N", unit="tokens",
      help="the span length, rounded up to whole blocks", rule="a whole number of tokens >= 1"),
    S("temperature", "decode", float, 0.1, key="temperature", ge=0,
      help="sampling temperature, unitless, 0 = greedy", rule="finite and >= 0 (0: greedy)"),
    S("top_p", "decode", float, 0.8, key="topP", gt=0, le=1,
      help="nucleus sampling: the probability mass kept, 0-1", rule="in (0, 1]"),
    S("seed", "decode", int, 0, key="seed", ge=0, lt=2**63, none="a random seed",
      help="sampling seed", rule="in [0, 2^63)"),
    S("max_context", "decode", int, 2048, key="maxContext", cli=False, ge=2, unit="tokens",
      help="canvas tokens (prefix + span + suffix) kept around the span", rule="a whole number of tokens >= 2"),
    S("placeholder", "decode", str, "\u22ef", key="placeholder", cli=False,
      help="draft text for a run of still-masked tokens"),
    S("fast", "decode", bool, False, key="fast", help="static-shape AR decode, one CUDA graph per iteration on GPU"),
    S("dual_cache", "decode", int, 0, key="dualCache", ge=1, zero="exact", metavar="N",
      help="approximate: reuse DLM keys/values away from the frontier, a full DLM forward every N iterations",
      rule="a whole number of iterations >= 1"),
    S("single_line", "decode", bool, False,
      help="the middle is one line: fim stops at its end; the DLM decoders stop once the first line is "
      "committed through its line break"),
    S("steps", "decode", int, 0, key="steps", ge=1, zero="one per masked token", applies=("dream",),
      help="the dream decoder: DLM forwards (steps) for the span", rule="a whole number of DLM forwards >= 1"),
    S("eps", "decode", float, 1e-3, key="eps", gt=0, lt=1, applies=("dream",),
      help="the dream decoder: the schedule's last time, in (0, 1)", rule="in (0, 1)"),
    S("alg_temp", "decode", float, 0.0, key="algTemp", ge=0, applies=("dream",),
      help="the dream decoder: 0 commits the most confident positions, > 0 draws them by confidence at this "
      "temperature, unitless", rule="finite and >= 0"),
    S("top_k", "decode", int, 0, key="topK", ge=1, zero="off", applies=("dream",),
      help="the dream decoder: keep the k likeliest tokens per position", rule="a whole number of tokens >= 1"),
    # the server's alone: masks per span kind (lsp_server.spans.SpanCaps), per infill, and suggestions
    S("line_rest", "caps", int, 16, key="spanCaps.lineRest", cli=False, ge=1, unit="tokens",
      help="masks for the rest of a line (the cursor mid-line)", rule="an integer >= 1"),
    S("block_body", "caps", int, 64, key="spanCaps.blockBody", cli=False, ge=1, unit="tokens",
      help="masks for a block's body (the cursor after `def ...:`)", rule="an integer >= 1"),
    S("next_statement", "caps", int, 32, key="spanCaps.nextStatement", cli=False, ge=1, unit="tokens",
      help="masks for the next statement (the cursor at the end of one)", rule="an integer >= 1"),
    S("margin", "infill", float, 0.5, key="infillMargin", cli=False, ge=0, le=100,
      help="an infill's masks: its selection's tokens x (1 + margin), unitless", rule="a number in [0, 100]"),
    S("min_tokens", "infill", int, 8, key="infillMinTokens", cli=False, ge=1, unit="tokens",
      help="fewest masks for an infill", rule="an integer >= 1"),
    S("max_tokens", "infill", int, 256, key="infillMaxTokens", cli=False, ge=1, unit="tokens",
      help="most masks for an infill (at least infillMinTokens)", rule="an integer >= 1"),
    S("empty_selection_tokens", "infill", int, 64, key="infillTokens", cli=False, ge=1, unit="tokens",
      help="masks for an infill at an empty selection (an insertion point)", rule="an integer >= 1"),
    S("suggestions", "server", int, 1, key="suggestions", cli=False, ge=1, le=5,
      help="inline items per request, decoded with seeds seed, seed + 1, ...", rule="an integer from 1 to 5"),
)
# fmt: on


def defaults(record: str) -> dict[str, Any]:
    """The defaults of one record's settings, by field name."""
    return {s.name: s.default for s in SETTINGS if s.record == record}


class OptionError(ValueError):
    """One decoding option is out of range; `field` names it, so each interface can say which of
    its own names (a CLI flag, a server setting) was wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid decoding option {field}: {problem}")
        self.field, self.problem = field, problem


_DECODE = defaults("decode")


@dataclass(frozen=True)
class DecodeConfig:
    """The "decode" settings of SETTINGS (their help, ranges and defaults are there), checked when made."""

    decoder: str = _DECODE["decoder"]
    block_size: int = _DECODE["block_size"]  # B
    mode: str = _DECODE["mode"]
    threshold: float = _DECODE["threshold"]  # tau
    scope: int = _DECODE["scope"]
    conditioning: str = _DECODE["conditioning"]
    tokens_per_step: int = _DECODE["tokens_per_step"]  # K for the dlm baseline
    max_new_tokens: int = _DECODE["max_new_tokens"]  # N, rounded up to whole blocks
    temperature: float = _DECODE["temperature"]
    top_p: float = _DECODE["top_p"]
    seed: int | None = _DECODE["seed"]
    max_context: int = _DECODE["max_context"]
    placeholder: str = _DECODE["placeholder"]
    fast: bool = _DECODE["fast"]  # static_ar.py
    dual_cache: int = _DECODE["dual_cache"]
    single_line: bool = _DECODE["single_line"]
    steps: int = _DECODE["steps"]  # dream.py
    eps: float = _DECODE["eps"]
    alg_temp: float = _DECODE["alg_temp"]
    top_k: int = _DECODE["top_k"]

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, what: str) -> None:
            if not ok:
                raise OptionError(field, f"{what}, got {getattr(self, field)!r}")

        for s in SETTINGS:  # types and ranges first: the checks below compare numbers
            if s.record == "decode" and (problem := s.problem(getattr(self, s.name))):
                need(False, s.name, problem)
        need(
            self.temperature == 0 or self.temperature >= MIN_TEMPERATURE,
            "temperature",
            f"must be 0 (greedy) or at least {MIN_TEMPERATURE}",
        )
        need(
            self.alg_temp == 0 or self.alg_temp >= MIN_TEMPERATURE,
            "alg_temp",
            f"must be 0 or at least {MIN_TEMPERATURE}",
        )
        need(
            self.span_tokens < self.max_context,
            "max_new_tokens",
            f"must be below {self.max_context} tokens (the context kept around the span)",
        )

    @property
    def span_tokens(self) -> int:
        """N rounded up to a whole number of blocks, so every block has exactly B tokens."""
        b = self.block_size
        return -(-self.max_new_tokens // b) * b

    @property
    def k(self) -> int:
        return self.tokens_per_step or self.block_size

    def with_options(self, **changes) -> "DecodeConfig":
        """Copy with changes; unknown names are an error, not silently ignored."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown decoding option(s): {', '.join(unknown)}")
        return replace(self, **changes)
