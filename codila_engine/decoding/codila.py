"""The CoDiLA sampler: one iteration = one DLM forward + one batched AR decode + one commit.

1. The DLM predicts marginals for the open tokens of the candidate blocks (the `scope` open
   blocks nearest the frontier).
2. Each block's marginals become soft tokens; the AR decodes all candidate blocks at once.
3. Static mode commits the block the AR is surest of; dynamic mode commits the longest
   confident prefix of a block, or one DLM token when no prefix of two is confident.
"""

from __future__ import annotations

import torch

from codila_engine.models.ar import BlockDecoder
from codila_engine.decoding.canvas import Canvas
from codila_engine.decoding.clock import Clock
from codila_engine.decoding.conditioning import soft_tokens, think_wrap
from codila_engine.config import DecodeConfig
from codila_engine.models.dlm import Marginals
from codila_engine.decoding.events import Commit
from codila_engine.sampling import sample
from codila_engine.decoding.selection import dynamic_choice, static_choice
from codila_engine.models.vocab import VocabBridge, shared_only


def block_inputs(
    probs: torch.Tensor,
    span_tokens: torch.Tensor,
    committed: torch.Tensor,
    embedding: torch.Tensor,
    bridge: VocabBridge,
    conditioning: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """AR inputs [C, B+2, H] and forced ids [C, B] for candidate blocks.

    Committed tokens enter as hard embeddings and are forced as AR outputs: the DLM sees them
    unmasked, so their 'marginal' is one-hot.
    """
    b = probs.shape[1]
    is_committed = torch.arange(b, device=probs.device)[None] < committed[:, None]
    cond = soft_tokens(probs, embedding, bridge.keep, bridge.eos_id, conditioning)
    cond = torch.where(is_committed[..., None], embedding[span_tokens], cond)
    forced = torch.where(is_committed, span_tokens, -1)
    return think_wrap(cond, embedding, bridge.think_id, bridge.end_think_id), forced


def codila_step(
    dlm: Marginals,
    ar: BlockDecoder,
    bridge: VocabBridge,
    canvas: Canvas,
    cfg: DecodeConfig,
    generator: torch.Generator | None,
    clock: Clock,
) -> Commit:
    blocks = canvas.candidates(cfg.scope)
    b = canvas.block_size
    device = canvas.ids.device
    offsets = torch.tensor([list(canvas.block_offsets(blk)) for blk in blocks], device=device)  # [C, B]
    positions = canvas.start + offsets
    committed = torch.tensor([canvas.committed_prefix(blk) for blk in blocks], device=device)

    with clock.phase("dlm"):
        logits = dlm.marginal_logits(canvas.ids, positions.flatten()).view(len(blocks), b, -1)
    with clock.phase("cond"):
        probs = torch.softmax(logits, dim=-1)
        inputs, forced = block_inputs(probs, canvas.ids[positions], committed, ar.embedding, bridge, cfg.conditioning)
    with clock.phase("ar"):
        drafts = ar.decode_blocks(
            inputs, forced, allowed=bridge.ar_allowed, temperature=cfg.temperature, top_p=cfg.top_p, generator=generator
        )
    with clock.phase("select"):
        if cfg.mode == "static":
            choice = static_choice(drafts.entropy, committed)
        else:
            choice = dynamic_choice(drafts.entropy, committed, cfg.threshold)
        start = int(committed[choice.row])
        picked = offsets[choice.row, start : start + choice.k].tolist()
        if choice.from_dlm:
            ids = [int(sample(shared_only(logits[choice.row, start], bridge), cfg.temperature, cfg.top_p, generator))]
        else:
            ids = drafts.ids[choice.row, start : start + choice.k].tolist()
    return Commit(picked, ids, "dlm" if choice.from_dlm else "ar")
