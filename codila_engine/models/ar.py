"""The local AR: a Qwen3 (or Qwen2) model that decodes every candidate block from its soft tokens.

All candidate blocks go through as one batch: a prefill of `<think> e_1..e_B </think>`, then B
tokens left to right with a KV cache. Tokens already committed in a block are forced (the AR
still sees them) and their entropy is not used for selection.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import torch
from transformers import DynamicCache

from codila_engine.models.checkpoint import check_folder, load_checkpoint, read_config
from codila_engine.sampling import entropy, sample


@dataclass
class BlockDrafts:
    ids: torch.Tensor  # [C, B] the AR's tokens for each candidate block
    entropy: torch.Tensor  # [C, B] entropy of the AR's distribution at each token
    logits: torch.Tensor | None = None  # [C, B, V] when asked for (tests)


class BlockDecoder(Protocol):
    """What the CoDiLA step needs from the AR: LocalAR (plain) or static_ar.StaticBlockDecoder."""

    @property
    def embedding(self) -> torch.Tensor:
        """The AR's input embedding matrix [V, H]: soft tokens are mixtures of its rows."""
        ...

    def decode_blocks(
        self,
        inputs: torch.Tensor,
        forced: torch.Tensor,
        *,
        allowed: torch.Tensor | None,
        temperature: float,
        top_p: float,
        generator: torch.Generator | None,
    ) -> BlockDrafts: ...


def cache_keyword(model) -> str:
    """The forward's KV-cache argument: `cache` from transformers 5.2x, `past_key_values` before
    (5.19, the newest vLLM's CPU build admits). A name the forward does not know is swallowed
    by its **kwargs, and every step would run without the cache."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class LocalAR:
    def __init__(self, model, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.cache_keyword = cache_keyword(model)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | None = None, dtype: torch.dtype | None = None) -> "LocalAR":
        from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

        kinds = {"qwen3": (Qwen3ForCausalLM, Qwen3Config), "qwen2": (Qwen2ForCausalLM, Qwen2Config)}
        raw = read_config(check_folder(path, "AR"))
        model_cls, config_cls = kinds.get(raw.get("model_type", ""), kinds["qwen3"])
        model, tokenizer, _ = load_checkpoint(
            path,
            "AR",
            "Qwen3 or Qwen2",
            lambda raw: raw.get("model_type") in kinds,
            model_cls,
            config_cls,
            device=device,
            dtype=dtype,
        )
        return cls(model, tokenizer)

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id if self.tokenizer is not None else self.model.config.eos_token_id

    @property
    def max_positions(self) -> int:
        return self.model.config.max_position_embeddings

    @property
    def embedding(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    @torch.inference_mode()
    def decode_blocks(
        self,
        inputs: torch.Tensor,
        forced: torch.Tensor,
        *,
        allowed: torch.Tensor | None = None,
        temperature: float,
        top_p: float,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
    ) -> BlockDrafts:
        """inputs [C, B+2, H] (think-wrapped soft tokens); forced [C, B] ids, -1 where free;
        allowed [V] restricts what the AR may emit (its output goes back into the DLM canvas)."""
        return self.decode_rows(
            inputs, forced, [forced.shape[0]], [generator], allowed, temperature, top_p, return_logits
        )

    @torch.inference_mode()
    def decode_rows(
        self,
        inputs: torch.Tensor,
        forced: torch.Tensor,
        sizes: Sequence[int],
        generators: Sequence[torch.Generator | None],
        allowed: torch.Tensor | None,
        temperature: float,
        top_p: float,
        return_logits: bool = False,
    ) -> BlockDrafts:
        """decode_blocks over the rows of several callers (`sizes` rows each, in order), each
        caller's rows sampled with its own generator: the same draws as its own call would make
        (serve/batching.py batches decodes so)."""
        c, b = forced.shape
        ids = torch.empty(c, b, dtype=torch.long, device=forced.device)
        ent = torch.empty(c, b, dtype=torch.float32, device=forced.device)
        all_logits = []
        kw = {self.cache_keyword: DynamicCache(config=self.model.config)}
        out = self.model(inputs_embeds=inputs, use_cache=True, logits_to_keep=1, **kw)
        for j in range(b):
            logits = out.logits[:, -1].float()
            if allowed is not None:
                logits = logits.masked_fill(~allowed, float("-inf"))
            ent[:, j] = entropy(logits)
            parts = zip(logits.split(list(sizes)), generators)
            tok = torch.cat([sample(part, temperature, top_p, gen) for part, gen in parts])
            ids[:, j] = torch.where(forced[:, j] >= 0, forced[:, j], tok)
            if return_logits:
                all_logits.append(logits)
            if j + 1 < b:
                out = self.model(
                    inputs_embeds=self.embedding[ids[:, j]].unsqueeze(1),
                    use_cache=True,
                    **kw,
                )
        return BlockDrafts(ids, ent, torch.stack(all_logits, 1) if return_logits else None)
