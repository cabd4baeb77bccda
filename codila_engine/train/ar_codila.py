"""The CoDiLA objective (paper, Appendix A.1): teach the AR to decode a block from its soft tokens.

The DLM is frozen. Blocks of the target region are masked (masking.codila_block_mask); the DLM
predicts their marginals; each masked block becomes `<think> e_1..e_B </think>` exactly as in
decoding (conditioning.py), and the AR learns to produce the block's true tokens left to right.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from codila_engine.decoding.conditioning import soft_tokens, think_wrap
from codila_engine.models.dlm import DreamDLM, shifted_positions
from codila_engine.train.loop import LoopConfig, TrainResult, resume_folder, train
from codila_engine.train.masking import codila_block_mask
from codila_engine.train.models import load_ar, save_ar
from codila_engine.train.sequences import Batch, SequenceData
from codila_engine.models.vocab import VocabBridge, build_bridge


@dataclass(frozen=True)
class CodilaTask:
    dlm: DreamDLM  # frozen
    bridge: VocabBridge
    block_sizes: tuple[int, ...] = (4,)  # one is drawn per step, so one AR serves several B
    conditioning: str = "soft"
    trains_embedding: bool = True  # False: only the think rows train (an adapter): no gradient for the rest


@torch.no_grad()
def block_marginals(dlm: DreamDLM, noisy: torch.Tensor, blocks: torch.Tensor, block_size: int) -> torch.Tensor:
    """DLM marginals [n, B, V] of the masked blocks, read with Dream's shift."""
    device = dlm.device
    hidden = dlm.model.model(input_ids=noisy.to(device)).last_hidden_state
    positions = blocks[:, 1:] + torch.arange(block_size)
    rows = blocks[:, :1].expand_as(positions)
    states = hidden[rows.to(device), shifted_positions(positions).to(device)]
    return torch.softmax(dlm.head(states), dim=-1)


def codila_loss(model, batch: Batch, generator: torch.Generator, *, task: CodilaTask) -> torch.Tensor:
    """Cross-entropy of the AR on every masked block's true tokens, teacher-forced."""
    b = task.block_sizes[int(torch.randint(len(task.block_sizes), (1,), generator=generator))]
    m = codila_block_mask(batch.ids, batch.target_starts, block_size=b, mask_id=task.dlm.mask_id, generator=generator)
    probs = block_marginals(task.dlm, m.noisy, m.blocks, b)
    emb = model.get_input_embeddings().weight
    read = emb if task.trains_embedding else emb.detach()  # soft tokens and teacher forcing read this
    labels = m.block_labels.to(emb.device)
    cond = soft_tokens(
        probs.to(emb.device), read, task.bridge.keep.to(emb.device), task.bridge.eos_id, task.conditioning
    )
    x = torch.cat([think_wrap(cond, emb, task.bridge.think_id, task.bridge.end_think_id), read[labels[:, :-1]]], 1)
    hidden = model.model(inputs_embeds=x).last_hidden_state[:, -b:]  # the last B positions predict y_1..y_B
    logits = model.lm_head(hidden.reshape(-1, hidden.shape[-1]))  # 2-D: a 3-D slice makes oneDNN copy the head per row
    return F.cross_entropy(logits.float(), labels.reshape(-1))


def train_ar_codila(
    tokenizer,
    train_data: SequenceData,
    val_data: SequenceData | None,
    cfg: LoopConfig,
    *,
    dlm_path: str | Path,
    init: str | Path,
    block_sizes: tuple[int, ...] = (4,),
    conditioning: str = "soft",
    device: torch.device = torch.device("cpu"),
) -> TrainResult:
    """Finetune the AR at `init` (or <out>/last when resuming) against the frozen DLM."""
    dlm = DreamDLM.load(dlm_path, device=device, dtype=torch.float32)
    dlm.model.requires_grad_(False)
    model = load_ar(resume_folder(cfg) or init, device)
    bridge = build_bridge(
        dlm.tokenizer,
        tokenizer,
        dlm_rows=dlm.vocab_rows,
        ar_rows=model.get_input_embeddings().weight.shape[0],
        mask_id=dlm.mask_id,
        eos_id=dlm.eos_id,
        device=device,
    )
    task = CodilaTask(dlm, bridge, tuple(block_sizes), conditioning)
    return train(
        model,
        partial(codila_loss, task=task),
        lambda m, folder: save_ar(m, tokenizer, folder),
        train_data,
        val_data,
        cfg,
    )
