"""Model shapes and checkpoint folders for the two models we train.

The DLM is a Dream checkpoint: transformers' Qwen2ForCausalLM weights (same parameter names)
with bidirectional attention, saved with a config.json that says DreamModel and carries the
mask id. The AR is a plain Qwen3ForCausalLM. Both folders hold the tokenizer, so each is a
complete model the engine can load on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from codila_engine.train.tokenizer import MASK, pad_id, save_tokenizer, token_id

MAX_SHARD_SIZE = "15MB"  # weight files above this are split (keeps each file small to move)


@dataclass(frozen=True)
class ModelSize:
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 768
    max_positions: int = 4096

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(
                f"hidden ({self.hidden}) must be a multiple of heads ({self.heads}), "
                f"and heads of kv_heads ({self.kv_heads})"
            )

    def common(self, tokenizer) -> dict:
        return dict(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            intermediate_size=self.intermediate,
            max_position_embeddings=self.max_positions,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad_id(tokenizer),
            bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        )


def new_dlm(size: ModelSize, tokenizer):
    """A randomly initialised Dream-style DLM (float32, bidirectional, untied head)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**size.common(tokenizer), tie_word_embeddings=False)
    config.is_causal = False  # bidirectional (not a declared Qwen2Config field): transformers reads it at every forward
    config.mask_token_id = token_id(tokenizer, MASK, "the diffusion model")
    return Qwen2ForCausalLM(config)


def new_ar(size: ModelSize, tokenizer):
    """A randomly initialised Qwen3 AR with tied embeddings, as Qwen3-0.6B."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**size.common(tokenizer), head_dim=size.hidden // size.heads, tie_word_embeddings=True)
    return Qwen3ForCausalLM(config)


def count_parameters(model) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_dream(model, tokenizer, folder: str | Path, max_shard_size: str = MAX_SHARD_SIZE) -> Path:
    """Save as a Dream checkpoint: Qwen2 weights, Dream config.json, tokenizer files."""
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True, max_shard_size=max_shard_size)
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.pop("is_causal", None)  # Dream's config has none; the loader sets it
    config.update(
        architectures=["DreamModel"],
        model_type="Dream",
        mask_token_id=int(model.config.mask_token_id),
        eos_token_id=model.config.eos_token_id,
        pad_token_id=model.config.pad_token_id,
        bos_token_id=model.config.bos_token_id,
        tie_word_embeddings=False,
    )
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_tokenizer(tokenizer, folder)
    return folder


def save_ar(model, tokenizer, folder: str | Path, max_shard_size: str = MAX_SHARD_SIZE) -> Path:
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True, max_shard_size=max_shard_size)
    save_tokenizer(tokenizer, folder)
    return folder


def load_dlm(folder: str | Path, device: torch.device):
    """A Dream folder's model in float32 for training, via the engine's loader."""
    from codila_engine.models.dlm import DreamDLM

    return DreamDLM.load(folder, device=device, dtype=torch.float32).model.train()


def load_ar(folder: str | Path, device: torch.device):
    from codila_engine.models.ar import LocalAR

    return LocalAR.load(folder, device=device, dtype=torch.float32).model.train()
