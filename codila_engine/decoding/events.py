"""What a decode reports: one Event per commit while it runs, one Result at the end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Commit:
    """A sampler's decision for one iteration: tokens for span offsets."""

    offsets: list[int]
    ids: list[int]
    source: str  # "ar" (a block from the AR) or "dlm" (tokens from the DLM's marginals)
    end: bool = False  # the text ends after these tokens: every offset still masked becomes EOS


@dataclass(frozen=True)
class Event:
    """One commit: which span positions landed, with which ids, and the draft after it."""

    iteration: int
    positions: tuple[int, ...]  # offsets inside the span (0 = first masked token)
    ids: tuple[int, ...]
    text: str  # the committed tokens decoded on their own
    draft: str  # the whole span so far, placeholder where tokens are still masked
    masks: tuple[int, ...]  # tokens behind each placeholder of the draft, in order
    source: str  # "ar" (a block from the AR), "dlm" (tokens from the DLM's marginals)
    elapsed_s: float


@dataclass
class Stats:
    iterations: int = 0
    tokens: int = 0  # span tokens committed by the sampler (automatic EOS fill not counted)
    text_tokens: int = 0  # tokens in the final text
    wall_s: float = 0.0
    dlm_s: float = 0.0  # DLM forward passes
    cond_s: float = 0.0  # marginals -> soft tokens
    ar_s: float = 0.0  # batched AR block decoding
    select_s: float = 0.0  # choosing and sampling what to commit
    first_commit_s: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.text_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "iterations": self.iterations,
            "tokens": self.tokens,
            "text_tokens": self.text_tokens,
            "wall_s": round(self.wall_s, 4),
            "dlm_s": round(self.dlm_s, 4),
            "cond_s": round(self.cond_s, 4),
            "ar_s": round(self.ar_s, 4),
            "select_s": round(self.select_s, 4),
            "first_commit_s": None if self.first_commit_s is None else round(self.first_commit_s, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


@dataclass
class Result:
    text: str
    ids: list[int]  # the span's token ids, masks left where the decode was cancelled
    stats: Stats = field(default_factory=Stats)
    cancelled: bool = False
    decoder: str = ""  # the decoder that produced it (codila, dlm, fim)
