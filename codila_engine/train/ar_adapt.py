"""Finetuning the default model (Qwen2.5-Coder-0.5B) into CoDiLA's local AR, against the default DLM.

The paper's recipe (ar_codila.py: DLM frozen, block-level masking, each masked block's soft
tokens between `<think>` and `</think>`, the AR learns the block's true tokens) on a base that has
no think tokens: they take the GGUF's free placeholders at Qwen3's ids (151667, 151668), and their
two embedding rows train together with LoRA adapters on every linear layer. A checkpoint holds
only what trains (adapter + two rows, ~35 MB), so it resumes exactly and can ship; `export_ar`
merges it into an ordinary Qwen2 folder that the AR loader reads.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from codila_engine.models.dlm import DreamDLM
from codila_engine.train.adapt import load_base, load_lora, new_lora, renamed_tokenizer
from codila_engine.train.ar_codila import CodilaTask, codila_loss
from codila_engine.train.loop import LoopConfig, TrainResult, starting_model, train
from codila_engine.train.sequences import SequenceData
from codila_engine.models.vocab import build_bridge

THINK_TOKENS = {"<think>": 151667, "</think>": 151668}  # Qwen3's ids, the paper's AR format
ROWS_FILE = "think_rows.safetensors"
ROWS_INIT = ("<|im_start|>", "<|im_end|>")  # the think rows start as the base's own delimiters (else as EOS)


def ar_tokenizer(base_folder: str | Path, tokens: dict[str, int] = THINK_TOKENS):
    """The base tokenizer with `<think>` and `</think>` at `tokens`' ids (tests use other ids)."""
    return renamed_tokenizer(base_folder, tokens)


class TrainedRows(torch.nn.Module):
    """An embedding whose rows at `ids` are trained vectors. `.weight` is what the soft tokens
    and the think wrap read (ar_codila.codila_loss), so the rows get gradients from both."""

    ids: torch.Tensor  # a buffer: it moves with the module

    def __init__(self, embedding: torch.nn.Embedding, ids: list[int], rows: torch.Tensor) -> None:
        super().__init__()
        self.embedding = embedding
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.rows = torch.nn.Parameter(rows.float())

    @property
    def weight(self) -> torch.Tensor:
        w = self.embedding.weight
        return w.index_put((self.ids.to(w.device),), self.rows.to(w.dtype))


class AdaptedAR(torch.nn.Module):
    """base + LoRA + the think rows, shaped like Qwen2ForCausalLM for codila_loss
    (`get_input_embeddings`, `.model`, `.lm_head`, a forward on `inputs_embeds`)."""

    def __init__(self, peft_model, rows: torch.Tensor, tokens: dict[str, int] = THINK_TOKENS) -> None:
        super().__init__()
        self.peft, self.tokens = peft_model, tokens
        self.embeddings = TrainedRows(peft_model.get_input_embeddings(), list(tokens.values()), rows)
        inner = peft_model.base_model.model  # the Qwen2ForCausalLM, its linears wrapped by LoRA
        self.model, self.lm_head = inner.model, inner.lm_head

    def get_input_embeddings(self) -> TrainedRows:
        return self.embeddings

    def forward(self, inputs_embeds: torch.Tensor):
        return self.peft(inputs_embeds=inputs_embeds)

    def param_groups(self, lr: float, rows_lr: float) -> list[dict]:
        lora = [p for p in self.peft.parameters() if p.requires_grad]
        return [{"params": lora, "lr": lr}, {"params": [self.embeddings.rows], "lr": rows_lr}]

    def save(self, folder: Path) -> None:
        self.peft.save_pretrained(str(folder))
        save_file({"think_rows": self.embeddings.rows.detach().cpu().contiguous()}, str(folder / ROWS_FILE))


def new_adapted_ar(base_folder, device, dtype, rank: int = 16, tokens: dict[str, int] = THINK_TOKENS) -> AdaptedAR:
    base = load_base(base_folder, device, dtype)
    tok = ar_tokenizer(base_folder, tokens)
    init = [tok.get_vocab().get(name, tok.eos_token_id) for name in ROWS_INIT]
    rows = base.get_input_embeddings().weight[torch.tensor(init)].detach().clone()
    return AdaptedAR(new_lora(base, rank), rows, tokens)


def load_adapted_ar(folder: str | Path, base_folder, device, dtype, tokens: dict[str, int] = THINK_TOKENS) -> AdaptedAR:
    rows = load_file(str(Path(folder) / ROWS_FILE))["think_rows"].to(device)
    return AdaptedAR(load_lora(folder, base_folder, device, dtype), rows, tokens)


def train_ar_adapt(
    tokenizer,
    base_folder,
    dlm_folder,
    train_data: SequenceData,
    val_data: SequenceData | None,
    cfg: LoopConfig,
    *,
    device: torch.device,
    dtype: torch.dtype,
    rank: int,
    rows_lr: float,
    block_sizes: tuple[int, ...] = (2, 4, 8),
    conditioning: str = "soft",
    tokens: dict[str, int] = THINK_TOKENS,
    init: str | Path | None = None,
) -> TrainResult:
    """Train (or resume from <out>/last, or warm-start from the checkpoint `init`) the AR's adapter
    and think rows on the frozen DLM at `dlm_folder`."""
    dlm = DreamDLM.load(dlm_folder, device=device, dtype=dtype)
    dlm.model.requires_grad_(False)
    model = starting_model(
        cfg,
        init,
        lambda folder, dev: load_adapted_ar(folder, base_folder, dev, dtype, tokens),
        lambda: new_adapted_ar(base_folder, device, dtype, rank, tokens),
        device,
    )
    rows = model.get_input_embeddings().embedding.weight.shape[0]
    bridge = build_bridge(
        dlm.tokenizer,
        tokenizer,
        dlm_rows=dlm.vocab_rows,
        ar_rows=rows,
        mask_id=dlm.mask_id,
        eos_id=dlm.eos_id,
        think_ids=(tokens["<think>"], tokens["</think>"]),
        device=device,
    )
    task = CodilaTask(dlm, bridge, tuple(block_sizes), conditioning, trains_embedding=False)

    def save(m: AdaptedAR, folder: Path) -> None:
        m.save(folder)
        (folder / "base.json").write_text(
            json.dumps({"base": str(base_folder), "dlm": str(dlm_folder), "tokens": tokens}) + "\n"
        )

    return train(
        model,
        partial(codila_loss, task=task),
        save,
        train_data,
        val_data,
        cfg,
        param_groups=model.param_groups(cfg.lr, rows_lr),
    )


def export_ar(
    adapter_folder: str | Path,
    base_folder: str | Path,
    out: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    tokens: dict[str, int] = THINK_TOKENS,
) -> Path:
    """Merge base + adapter + think rows into an ordinary Qwen2 folder with `<think>` in its tokenizer."""
    from codila_engine.train.models import save_ar

    model = load_adapted_ar(adapter_folder, base_folder, torch.device("cpu"), dtype, tokens)
    merged = model.peft.merge_and_unload()
    with torch.no_grad():  # tied lm_head reads these rows too: the decoders never let the AR emit them
        merged.get_input_embeddings().weight[list(tokens.values())] = model.embeddings.rows.to(merged.dtype)
    return save_ar(merged, ar_tokenizer(base_folder, tokens), out)
