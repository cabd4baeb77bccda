"""CoDiLA decoding (Coherent Diffusion with Local Autoregression): the algorithm; start reading here.

The span to fill is cut into blocks of B tokens (canvas.py). One iteration, `CodilaStep`:
1. DLM forward: the diffusion LM predicts a marginal for every token of the candidate blocks,
   the `scope` open blocks nearest the decoding frontier (models/dlm.py).
2. Soft tokens: each marginal becomes one AR input embedding, its mixture of the AR's
   embedding rows; tokens already committed enter as themselves (conditioning.py).
3. Local AR: the small AR decodes every candidate block at once from its soft tokens, one
   draft of B tokens per block with the entropy of each token (models/ar.py, static_ar.py).
4. Commit: static mode commits the whole draft of lowest mean entropy; dynamic mode the longest
   draft prefix whose mean entropy is within the threshold, or, where no block has two such
   tokens, one token sampled from the DLM's marginal (selection.py).
The loop (loop.py) repeats the step until the span is full; engine.py builds it from a DecodeConfig.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codila_engine.config import DecodeConfig
from codila_engine.decoding.canvas import Canvas
from codila_engine.decoding.clock import Clock
from codila_engine.decoding.conditioning import soft_tokens, think_wrap
from codila_engine.decoding.events import Commit
from codila_engine.decoding.selection import dynamic_choice, static_choice
from codila_engine.models.ar import BlockDecoder
from codila_engine.models.dlm import Marginals
from codila_engine.models.vocab import VocabBridge, shared_only
from codila_engine.sampling import sample


@dataclass
class CodilaStep:
    """One CoDiLA iteration per call: the decode loop's step for `--decoder codila`."""

    dlm: Marginals
    ar: BlockDecoder  # LocalAR, or its static fast path (`DecodeConfig.fast`)
    bridge: VocabBridge  # how DLM marginals map onto the AR's vocabulary
    canvas: Canvas
    cfg: DecodeConfig
    generator: torch.Generator | None = None

    def __call__(self, clock: Clock) -> Commit:
        canvas, cfg = self.canvas, self.cfg
        blocks = canvas.candidates(cfg.scope)
        device = canvas.ids.device
        offsets = torch.tensor([list(canvas.block_offsets(blk)) for blk in blocks], device=device)  # [C, B] in the span
        positions = canvas.start + offsets  # [C, B] on the canvas
        committed = torch.tensor([canvas.committed_prefix(blk) for blk in blocks], device=device)  # [C]

        with clock.phase("dlm"):  # 1. DLM forward: marginal logits [C, B, V] for every token of the blocks
            marginal = self.dlm.marginal_logits(canvas.ids, positions.flatten()).view(*offsets.shape, -1)
        with clock.phase("cond"):  # 2. soft tokens, <think>-wrapped: the AR's inputs [C, B+2, H]
            inputs, forced = block_inputs(
                torch.softmax(marginal, dim=-1),
                canvas.ids[positions],
                committed,
                self.ar.embedding,
                self.bridge,
                cfg.conditioning,
            )
        with clock.phase("ar"):  # 3. local AR: one draft per block, with the entropy of each token
            drafts = self.ar.decode_blocks(
                inputs,
                forced,
                allowed=self.bridge.ar_allowed,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                generator=self.generator,
            )
        with clock.phase("select"):  # 4. commit: which block, and how many of its tokens
            if cfg.mode == "static":
                choice = static_choice(drafts.entropy, committed)
            else:
                choice = dynamic_choice(drafts.entropy, committed, cfg.threshold)
            first_open = int(committed[choice.row])
            picked = offsets[choice.row, first_open : first_open + choice.k].tolist()
            if choice.from_dlm:  # no confident draft: one token from the DLM's own marginal
                only_shared = shared_only(marginal[choice.row, first_open], self.bridge)
                ids = [int(sample(only_shared, cfg.temperature, cfg.top_p, self.generator))]
            else:
                ids = drafts.ids[choice.row, first_open : first_open + choice.k].tolist()
        return Commit(picked, ids, "dlm" if choice.from_dlm else "ar")


def block_inputs(
    probs: torch.Tensor,
    block_ids: torch.Tensor,
    committed: torch.Tensor,
    embedding: torch.Tensor,
    bridge: VocabBridge,
    conditioning: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """AR inputs [C, B+2, H] and forced ids [C, B] for candidate blocks, from their marginals
    `probs` [C, B, V] and the canvas ids `block_ids` [C, B] there.

    Committed tokens enter as hard embeddings and are forced as AR outputs: the DLM sees them
    unmasked, so their 'marginal' is one-hot.
    """
    b = probs.shape[1]
    is_committed = torch.arange(b, device=probs.device)[None] < committed[:, None]
    cond = soft_tokens(probs, embedding, bridge.keep, bridge.eos_id, conditioning)
    cond = torch.where(is_committed[..., None], embedding[block_ids], cond)
    forced = torch.where(is_committed, block_ids, -1)
    return think_wrap(cond, embedding, bridge.think_id, bridge.end_think_id), forced
