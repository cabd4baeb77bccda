"""Masked-diffusion training of the Dream-format DLM (the noise is in masking.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from codila_engine.models.dlm import shifted_positions
from codila_engine.train.ar_pretrain import ar_loss
from codila_engine.train.loop import LoopConfig, TrainResult, starting_model, train
from codila_engine.train.masking import IGNORE, DlmNoise, dlm_mask
from codila_engine.train.models import ModelSize, load_dlm, new_dlm, save_dream
from codila_engine.train.sequences import Batch, SequenceData
from codila_engine.train.tokenizer import pad_id


# teacher(clean ids [b, L], rows, positions) -> logits [n, vocab] of the next token at (rows, positions)
Teacher = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def dlm_loss(
    model,
    batch: Batch,
    generator: torch.Generator,
    *,
    mask_id: int,
    pad: int,
    noise: DlmNoise,
    teacher: Teacher | None = None,
    distill: float = 0.0,
) -> torch.Tensor:
    """Weighted cross-entropy on masked tokens, averaged over sequences.

    Dream predicts token i from the hidden state at i-1, so the head runs only on the states
    left of each target: cheaper than full logits when few tokens are masked.

    With a `teacher` (in training only), each masked token's loss is (1 - distill) x the
    cross-entropy + distill x KL(teacher || model), the teacher reading the clean sequence: soft
    targets carry the teacher's alternatives, not only the one true token. Pad targets (the
    padded span's filler) keep the plain cross-entropy. Validation stays the plain objective, so
    runs with and without a teacher compare.
    """
    m = dlm_mask(
        batch.ids, batch.target_starts, batch.lengths, mask_id=mask_id, pad_id=pad, generator=generator, noise=noise
    )
    device = model.lm_head.weight.device
    hidden = model.model(input_ids=m.noisy.to(device)).last_hidden_state
    rows, cols = (m.labels != IGNORE).nonzero(as_tuple=True)
    positions = shifted_positions(cols)
    logits = model.lm_head(hidden[rows.to(device), positions.to(device)]).float()
    labels = m.labels[rows, cols].to(device)
    loss = F.cross_entropy(logits, labels, reduction="none")
    if teacher is not None and distill > 0 and model.training:
        clean = torch.where(m.labels != IGNORE, m.labels, m.noisy).to(device)
        with torch.no_grad():
            target = F.log_softmax(teacher(clean, rows.to(device), positions.to(device)).float(), -1)
        kl = F.kl_div(F.log_softmax(logits, -1), target, log_target=True, reduction="none").sum(-1)
        loss = torch.where(labels == pad, loss, (1 - distill) * loss + distill * kl)
    return (loss * m.weights[rows, cols].to(device)).sum() / batch.ids.shape[0]


def train_dlm(
    tokenizer,
    train_data: SequenceData,
    val_data: SequenceData | None,
    cfg: LoopConfig,
    *,
    size: ModelSize = ModelSize(),
    init: str | Path | None = None,
    device: torch.device = torch.device("cpu"),
    noise: DlmNoise = DlmNoise(),
    objective: str = "diffusion",
) -> TrainResult:
    """Train a new DLM of `size`, or continue one from `init` / from <out>/last when resuming.

    objective="causal" trains the same Qwen2 model as an AR (causal attention, next-token loss):
    like Dream, which starts from Qwen2.5, the diffusion phase can then start from a model that
    already knows the language. Dream's shift makes the two line up: in both, the hidden state
    at i-1 predicts token i.
    """
    model = starting_model(cfg, init, load_dlm, lambda: new_dlm(size, tokenizer), device)
    if objective == "causal":
        model.config.is_causal = True  # transformers reads it at every forward
        loss = ar_loss
    else:
        loss = partial(dlm_loss, mask_id=int(model.config.mask_token_id), pad=pad_id(tokenizer), noise=noise)
    return train(model, loss, lambda m, folder: save_dream(m, tokenizer, folder), train_data, val_data, cfg)
