"""The canvas: prefix | span of masked tokens cut into blocks of B | suffix.

It is the single owner of decoding state. Samplers read it (which blocks are open, what is
committed) and change it only through `commit`. An empty suffix means completion, where EOS
ends the text; a non-empty suffix means infilling, where EOS/pad inside the span are dropped.
"""

from __future__ import annotations

from itertools import groupby
from typing import Callable, Sequence

import torch

Decode = Callable[[list[int]], str]


class Canvas:
    def __init__(
        self,
        prefix_ids: Sequence[int],
        suffix_ids: Sequence[int],
        span_length: int,
        block_size: int,
        *,
        mask_id: int,
        eos_id: int,
        pad_id: int | None = None,
        more_ends: Sequence[int] = (),
        device: torch.device | str = "cpu",
    ) -> None:
        if span_length < 1 or span_length % block_size:
            raise ValueError(f"span length {span_length} must be a positive multiple of the block size {block_size}")
        self.start = len(prefix_ids)
        self.span_length = span_length
        self.block_size = block_size
        self.mask_id = mask_id
        self.eos_id = eos_id
        self.ends = {eos_id, *more_ends} | ({pad_id} if pad_id is not None else set())
        self.infilling = len(suffix_ids) > 0
        self.prefix_ids = list(prefix_ids)
        self.suffix_ids = list(suffix_ids)
        self.span: list[int | None] = [None] * span_length  # None = still masked
        self.ids = torch.tensor([*prefix_ids, *([mask_id] * span_length), *suffix_ids], dtype=torch.long, device=device)

    # --- reading -----------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return self.span_length // self.block_size

    @property
    def done(self) -> bool:
        return all(t is not None for t in self.span)

    def block_offsets(self, block: int) -> range:
        b = self.block_size
        return range(block * b, (block + 1) * b)

    def committed_prefix(self, block: int) -> int:
        """Leading committed tokens of a block (CoDiLA commits block prefixes only)."""
        count = 0
        for off in self.block_offsets(block):
            if self.span[off] is None:
                break
            count += 1
        return count

    def open_blocks(self) -> list[int]:
        return [blk for blk in range(self.num_blocks) if any(self.span[o] is None for o in self.block_offsets(blk))]

    def candidates(self, scope: int) -> list[int]:
        """The `scope` open blocks nearest the decoding frontier (the leftmost open block)."""
        return self.open_blocks()[:scope]

    def masked_offsets(self) -> list[int]:
        return [o for o, t in enumerate(self.span) if t is None]

    def span_ids(self) -> list[int]:
        return [self.mask_id if t is None else t for t in self.span]

    # --- changing ----------------------------------------------------------------------
    def commit(self, offsets: Sequence[int], ids: Sequence[int], end: bool = False) -> list[int]:
        """Fix tokens at span offsets. Returns the offsets filled automatically with EOS.

        In completion an EOS ends the text, so every masked offset after it becomes EOS at once:
        there is nothing left to decode there. `end` does the same in either mode (a decoder
        that knows the text is over, such as FIM at its stop rules).
        """
        if len(offsets) != len(ids):
            raise ValueError("commit needs one id per offset")
        for off, tok in zip(offsets, ids):
            if self.span[off] is not None:
                raise ValueError(f"span offset {off} is already committed")
            self.span[off] = int(tok)
        filled: list[int] = []
        if end:
            filled = self.masked_offsets()
            for o in filled:
                self.span[o] = self.eos_id
        elif not self.infilling:
            ends = [o for o, t in zip(offsets, ids) if int(t) in self.ends]
            if ends:
                filled = [o for o in range(min(ends) + 1, self.span_length) if self.span[o] is None]
                for o in filled:
                    self.span[o] = self.eos_id
        changed = list(offsets) + filled
        if changed:
            pos = torch.tensor([self.start + o for o in changed], device=self.ids.device)
            vals = torch.tensor([self.span[o] for o in changed], device=self.ids.device)
            self.ids[pos] = vals
        return filled

    # --- text --------------------------------------------------------------------------
    def visible(self) -> list[int | None]:
        """Span tokens as the user sees them: cut at the first EOS (completion) or without
        EOS/pad (infilling); None where masked."""
        out: list[int | None] = []
        for tok in self.span:
            if tok is not None and tok in self.ends:
                if self.infilling:
                    continue
                break
            out.append(tok)
        return out

    def runs(self) -> list[tuple[bool, list]]:
        """The visible span in maximal runs: (masked, its tokens)."""
        return [(masked, list(run)) for masked, run in groupby(self.visible(), key=lambda tok: tok is None)]

    def draft(self, decode: Decode, placeholder: str) -> str:
        """The span as text, one placeholder for each run of still-masked tokens."""
        return "".join(placeholder if masked else decode(run) for masked, run in self.runs())

    def masked_runs(self) -> tuple[int, ...]:
        """How many tokens each placeholder of `draft` stands for, in order."""
        return tuple(len(run) for masked, run in self.runs() if masked)

    def text(self, decode: Decode) -> str:
        """The committed text (masked tokens, if any are left, are simply absent)."""
        return decode([t for t in self.visible() if t is not None])
