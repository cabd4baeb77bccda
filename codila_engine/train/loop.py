"""The optimisation loop every training command shares: AdamW with a cosine schedule, gradient
clipping, periodic validation on held-out data, the best and the last checkpoint, resume.

Each step draws its batch and its noise from a generator seeded by (seed, step), so a run
resumed from `last` sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from tqdm import tqdm

from codila_engine.train.models import count_parameters
from codila_engine.train.sequences import Batch, SequenceData

LossFn = Callable[[torch.nn.Module, Batch, torch.Generator], torch.Tensor]
Model = TypeVar("Model", bound=torch.nn.Module)
SaveFn = Callable[[Model, Path], object]  # writes the model being trained into a folder
STATE_FILE = "trainer_state.pt"
LOG_FILE = "log.jsonl"


@dataclass
class LoopConfig:
    out: Path
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3e-4
    warmup_ratio: float = 0.03
    clip_norm: float = 7.0
    weight_decay: float = 0.0
    val_every: int = 200  # 0: validate only at the end
    val_batches: int = 8
    seed: int = 0
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("steps", "batch_size", "grad_accum", "val_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class TrainResult:
    step: int
    best_val: float | None
    losses: list[float] = field(default_factory=list)  # training loss of each step run here
    val_losses: list[tuple[int, float]] = field(default_factory=list)


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def resume_folder(cfg: LoopConfig) -> Path | None:
    """`<out>/last` when resuming (an error if there is none), else None."""
    if not cfg.resume:
        return None
    last = cfg.out / "last"
    if not (last / STATE_FILE).is_file():
        raise FileNotFoundError(f"--resume: no checkpoint to resume in {last} (run once without --resume)")
    return last


def starting_model(cfg: LoopConfig, init, load: Callable, new: Callable, device: torch.device):
    """The model a run starts from: <out>/last when resuming, else `init`, else a new one."""
    start = resume_folder(cfg) or init
    return load(start, device) if start is not None else new().to(device)


def _log(cfg: LoopConfig, record: dict) -> None:
    with (cfg.out / LOG_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")


def _save(folder: Path, model: Model, save_fn: SaveFn[Model], info: dict, state: dict | None = None) -> None:
    """Write to a temporary folder, then swap it in: an interrupted save never breaks `folder`."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_fn(model, tmp)
    (tmp / "checkpoint.json").write_text(json.dumps(info) + "\n")
    if state is not None:
        torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


@torch.no_grad()
def evaluate(model, loss_fn: LossFn, data: SequenceData, cfg: LoopConfig) -> float:
    """Mean loss on fixed held-out sequences with fixed noise, comparable across a run."""
    was_training = model.training
    model.eval()
    n = min(len(data), cfg.val_batches * cfg.batch_size)
    index = torch.arange(n) * len(data) // n
    g = step_generator(cfg.seed, -1)
    losses = [float(loss_fn(model, data.batch(index[i : i + cfg.batch_size]), g)) for i in range(0, n, cfg.batch_size)]
    model.train(was_training)
    return sum(losses) / len(losses)


def train(
    model: Model,
    loss_fn: LossFn,
    save_fn: SaveFn[Model],
    train_data: SequenceData,
    val_data: SequenceData | None,
    cfg: LoopConfig,
    *,
    param_groups: list[dict] | None = None,
    metrics: Callable[[torch.nn.Module], dict] | None = None,
) -> TrainResult:
    """Run (or resume) training to cfg.steps; checkpoints go to <out>/last and <out>/best.
    `param_groups` (default: every trainable parameter at cfg.lr) may set their own lr;
    `metrics(model)` is logged with every validation (a learning curve beyond the loss)."""
    from transformers import get_cosine_schedule_with_warmup

    if len(train_data) == 0:
        raise ValueError("no training sequences: the corpus is empty after filtering")
    cfg.out.mkdir(parents=True, exist_ok=True)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * cfg.steps), cfg.steps)
    result = TrainResult(step=0, best_val=None)
    last = resume_folder(cfg)
    if last is not None:
        state = torch.load(last / STATE_FILE, map_location="cpu")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        result.step, result.best_val = state["step"], state["best_val"]
    if val_data is not None and len(val_data) == 0:
        val_data = None  # nothing to validate on
    n_params = count_parameters(model)
    if cfg.progress:
        tqdm.write(f"{type(model).__name__}: {n_params / 1e6:.2f}M parameters, starting at step {result.step}")
    _log(
        cfg,
        {
            "event": "start",
            "step": result.step,
            "parameters": n_params,
            "train_sequences": len(train_data),
            "val_sequences": len(val_data) if val_data is not None else 0,
            **{k: str(v) for k, v in asdict(cfg).items()},
        },
    )

    def checkpoint(val: float | None) -> None:
        info = {"step": result.step, "val_loss": val}
        if val is not None and (result.best_val is None or val < result.best_val):
            result.best_val = val
            _save(cfg.out / "best", model, save_fn, info)
        state = {
            "step": result.step,
            "best_val": result.best_val,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        _save(cfg.out / "last", model, save_fn, info, state)

    def validate() -> float | None:
        if val_data is None:
            return None
        val = evaluate(model, loss_fn, val_data, cfg)
        result.val_losses.append((result.step, val))
        if cfg.progress:
            tqdm.write(f"step {result.step}: validation loss {val:.4f}")
        measured = metrics(model) if metrics else {}
        if cfg.progress and measured:
            tqdm.write("  " + ", ".join(f"{k} {v:.4f}" for k, v in measured.items()))
        _log(
            cfg,
            {
                "event": "val",
                "step": result.step,
                "val_loss": val,
                "best": result.best_val is None or val < result.best_val,
                **measured,
            },
        )
        return val

    model.train()
    tokens_per_step = cfg.batch_size * cfg.grad_accum * train_data.seq_len
    bar = tqdm(total=cfg.steps, initial=result.step, desc="training", unit="step", disable=not cfg.progress)
    started, ema = time.perf_counter(), None
    while result.step < cfg.steps:
        g = step_generator(cfg.seed, result.step)
        index = torch.randint(len(train_data), (cfg.batch_size * cfg.grad_accum,), generator=g)
        total = 0.0
        for part in index.split(cfg.batch_size):
            loss = loss_fn(model, train_data.batch(part), g) / cfg.grad_accum
            loss.backward()
            total += loss.item()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        result.step += 1
        result.losses.append(total)
        ema = total if ema is None else 0.95 * ema + 0.05 * total
        rate = len(result.losses) * tokens_per_step / (time.perf_counter() - started)
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", tok_s=f"{rate:.0f}")
        _log(
            cfg,
            {
                "event": "train",
                "step": result.step,
                "loss": total,
                "grad_norm": grad_norm,
                "lr": scheduler.get_last_lr()[0],
                "tokens_per_s": rate,
            },
        )
        if cfg.val_every and result.step % cfg.val_every == 0 and result.step < cfg.steps:
            checkpoint(validate())
    bar.close()
    checkpoint(validate())
    return result
