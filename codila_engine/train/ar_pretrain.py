"""Next-token pretraining of the Qwen3 AR on the same corpus and tokenizer as the DLM."""

from __future__ import annotations

from pathlib import Path

import torch

from codila_engine.train.loop import LoopConfig, TrainResult, starting_model, train
from codila_engine.train.masking import IGNORE
from codila_engine.train.models import ModelSize, load_ar, new_ar, save_ar
from codila_engine.train.sequences import Batch, SequenceData


def causal_labels(batch: Batch) -> torch.Tensor:
    """Labels on the target region's real tokens (the first EOS included); padding and
    prompts carry no loss."""
    pos = torch.arange(batch.ids.shape[1])
    keep = (pos >= batch.target_starts[:, None]) & (pos < batch.lengths[:, None])
    return torch.where(keep, batch.ids, IGNORE)


def ar_loss(model, batch: Batch, generator: torch.Generator) -> torch.Tensor:
    device = model.lm_head.weight.device
    return model(input_ids=batch.ids.to(device), labels=causal_labels(batch).to(device)).loss


def train_ar(
    tokenizer,
    train_data: SequenceData,
    val_data: SequenceData | None,
    cfg: LoopConfig,
    *,
    size: ModelSize = ModelSize(),
    init: str | Path | None = None,
    device: torch.device = torch.device("cpu"),
) -> TrainResult:
    """Train a new AR of `size`, or continue one from `init` / from <out>/last when resuming."""
    model = starting_model(cfg, init, load_ar, lambda: new_ar(size, tokenizer), device)
    return train(model, ar_loss, lambda m, folder: save_ar(m, tokenizer, folder), train_data, val_data, cfg)
