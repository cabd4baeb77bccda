"""Decoding options: one frozen record that the CLI, the server and the benchmarks all fill."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

DECODERS = ("auto", "codila", "dlm", "dream", "fim")
MODES = ("static", "dynamic")
CONDITIONINGS = ("soft", "top1")
DTYPES = ("float32", "bfloat16", "float16")  # torch dtypes for weights and compute
MIN_TEMPERATURE = 1e-4  # a positive temperature below this overflows float32 logits when divided
# what each field's annotation accepts, and how to say it (a bool is never a number here)
_KINDS = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
    "int | None": ((int, type(None)), "an integer or null"),
}


class OptionError(ValueError):
    """One decoding option is out of range; `field` names it, so each interface can say which of
    its own names (a CLI flag, a server setting) was wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid decoding option {field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class DecodeConfig:
    # codila | dlm (plain diffusion baseline, K per step) | dream (Dream's own sampler: dream.py) | fim (plain
    # left-to-right FIM by the AR) | auto: codila for a DLM + AR pair, fim for an AR alone, dlm for a DLM alone
    decoder: str = "auto"
    block_size: int = 4  # B: tokens the AR decodes per block
    mode: str = "static"  # static: commit a whole block; dynamic: longest confident prefix
    threshold: float = 0.3  # tau, mean entropy (nats) a dynamic prefix may have
    scope: int = 10  # candidate blocks nearest the decoding frontier
    conditioning: str = "soft"  # soft: pi . E_ar; top1: E(argmax pi)
    tokens_per_step: int = 0  # K for the dlm baseline; 0 means K = block_size
    max_new_tokens: int = 64  # N, rounded up to whole blocks
    temperature: float = 0.1
    top_p: float = 0.8
    seed: int | None = 0
    max_context: int = 2048  # canvas tokens (prefix + span + suffix) kept around the span
    placeholder: str = "\u22ef"  # shown in drafts where tokens are still masked
    fast: bool = False  # static-shape AR decode, one CUDA graph per iteration on GPU (static_ar.py)
    dual_cache: int = 0  # approximate: full DLM forward every N iterations, window only between; 0 = exact
    single_line: bool = False  # fim: the middle ends at the end of its first line
    steps: int = 0  # dream: DLM forwards for the span (0: one per token)
    eps: float = 1e-3  # dream: the schedule's last time
    alg_temp: float = 0.0  # dream: 0 commits the most confident; > 0 draws positions by confidence
    top_k: int = 0  # dream: keep the k likeliest tokens (0: off)

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, what: str) -> None:
            if not ok:
                raise OptionError(field, f"{what}, got {getattr(self, field)!r}")

        for f in fields(self):  # types first: the ranges below compare numbers
            value, (kinds, name) = getattr(self, f.name), _KINDS[f.type]
            need(
                isinstance(value, kinds) and (f.type == "bool" or not isinstance(value, bool)),
                f.name,
                f"must be {name}",
            )
        need(self.seed is None or 0 <= self.seed < 2**63, "seed", "must be in [0, 2^63) (or null: a random seed)")
        need(self.decoder in DECODERS, "decoder", f"must be one of {', '.join(DECODERS)}")
        need(self.mode in MODES, "mode", f"must be one of {', '.join(MODES)}")
        need(self.conditioning in CONDITIONINGS, "conditioning", f"must be one of {', '.join(CONDITIONINGS)}")
        need(self.block_size >= 1, "block_size", "must be a whole number of tokens >= 1")
        need(self.scope >= 1, "scope", "must be a whole number of blocks >= 1")
        need(self.tokens_per_step >= 0, "tokens_per_step", "must be >= 1 tokens (0: the block size)")
        need(self.max_new_tokens >= 1, "max_new_tokens", "must be a whole number of tokens >= 1")
        need(
            math.isfinite(self.threshold) and self.threshold >= 0,
            "threshold",
            "must be a finite mean entropy >= 0 (nats)",
        )
        need(
            math.isfinite(self.temperature) and self.temperature >= 0,
            "temperature",
            "must be finite and >= 0 (0: greedy)",
        )
        need(
            self.temperature == 0 or self.temperature >= MIN_TEMPERATURE,
            "temperature",
            f"must be 0 (greedy) or at least {MIN_TEMPERATURE}",
        )
        need(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        need(self.max_context >= 2, "max_context", "must be >= 2 tokens")
        need(
            self.span_tokens < self.max_context,
            "max_new_tokens",
            f"must be below {self.max_context} tokens (the context kept around the span)",
        )
        need(self.dual_cache >= 0, "dual_cache", "must be >= 0 iterations (0: exact)")
        need(self.steps >= 0, "steps", "must be >= 1 DLM forwards (0: one per token)")
        need(math.isfinite(self.eps) and 0 < self.eps < 1, "eps", "must be in (0, 1)")
        need(math.isfinite(self.alg_temp) and self.alg_temp >= 0, "alg_temp", "must be finite and >= 0")
        need(
            self.alg_temp == 0 or self.alg_temp >= MIN_TEMPERATURE,
            "alg_temp",
            f"must be 0 or at least {MIN_TEMPERATURE}",
        )
        need(self.top_k >= 0, "top_k", "must be >= 0 tokens (0: off)")

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
