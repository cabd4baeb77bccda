"""Decoding options: one frozen record that the CLI, the server and the benchmarks all fill."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

DECODERS = ("auto", "codila", "dlm", "fim")
MODES = ("static", "dynamic")
CONDITIONINGS = ("soft", "top1")
DTYPES = ("float32", "bfloat16", "float16")  # torch dtypes for weights and compute


@dataclass(frozen=True)
class DecodeConfig:
    # codila | dlm (plain diffusion baseline) | fim (plain left-to-right FIM by the AR) | auto: codila for a
    # DLM + AR pair, fim for an AR alone (the default model), dlm for a DLM alone
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

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"invalid decoding option: {what}")

        need(self.decoder in DECODERS, f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        need(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
        need(
            self.conditioning in CONDITIONINGS,
            f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}",
        )
        need(self.block_size >= 1, f"block_size must be >= 1, got {self.block_size}")
        need(self.scope >= 1, f"scope must be >= 1, got {self.scope}")
        need(self.tokens_per_step >= 0, f"tokens_per_step must be >= 0, got {self.tokens_per_step}")
        need(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        need(self.threshold >= 0, f"threshold must be >= 0, got {self.threshold}")
        need(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        need(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        need(self.max_context > self.span_tokens, "max_context must exceed the span length")
        need(self.dual_cache >= 0, f"dual_cache must be >= 0 (0 = exact), got {self.dual_cache}")

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
