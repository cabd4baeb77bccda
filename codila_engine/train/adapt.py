"""Adapting the default model (Qwen2.5-Coder-0.5B) into a Dream-format DLM, as Dream was made
from Qwen2.5: bidirectional attention, Dream's shifted prediction, `<|mask|>` at 151666.

What trains: LoRA adapters on every linear layer (peft) and one mask vector that replaces the
embedding of `<|mask|>` at the input (its stored row is untrained). The base stays frozen in
bfloat16 where the CPU is fast at it. The loss is dlm_pretrain's masked-diffusion loss (random
masks, spans, padded spans). A checkpoint holds only what trains (adapter + mask vector, ~35 MB),
so it resumes exactly and can ship; `export_dream` merges it into an ordinary Dream folder.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from codila_engine.models.dlm import shifted_positions
from codila_engine.sampling import entropy
from codila_engine.train.dlm_pretrain import dlm_loss
from codila_engine.train.loop import LoopConfig, TrainResult, starting_model, train
from codila_engine.train.masking import DlmNoise
from codila_engine.train.sequences import SequenceData

DREAM_TOKENS = {"<|beginoftext|>": 151665, "<|mask|>": 151666}  # Dream's own ids, after Qwen2.5's 151665 tokens
MASK_ID = DREAM_TOKENS["<|mask|>"]
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MASK_FILE = "mask_vector.safetensors"


def renamed_tokenizer(base_folder: str | Path, names: dict[str, int], **roles):
    """The base tokenizer with the placeholders at `names`' ids replaced by those special tokens
    (the GGUF's vocabulary fills ids 151665.. with `[PAD151665]`-style entries)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from codila_engine.models.checkpoint import load_tokenizer

    base = load_tokenizer(Path(base_folder))
    data = json.loads(base.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    for name, i in names.items():
        if vocab.get(f"[PAD{i}]") != i:
            raise ValueError(f"id {i} of {base_folder}'s tokenizer is not a free placeholder: cannot put {name} there")
        vocab[name] = vocab.pop(f"[PAD{i}]")  # same id: an added token already in the vocabulary keeps it
        data["added_tokens"].append(
            {
                "id": i,
                "content": name,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)),
        eos_token=base.eos_token,
        pad_token=base.pad_token,
        **roles,
    )
    return tok


def dream_tokenizer(base_folder: str | Path, tokens: dict[str, int] = DREAM_TOKENS):
    """The base tokenizer with Dream's added tokens at Dream's ids (`tokens`: tests use others)."""
    return renamed_tokenizer(base_folder, tokens, mask_token="<|mask|>", bos_token="<|beginoftext|>")


class MaskedInputs(torch.nn.Module):
    """The decoder stack, reading the trained mask vector wherever the input is `<|mask|>`."""

    def __init__(self, decoder, mask_vector: torch.nn.Parameter, mask_id: int) -> None:
        super().__init__()
        self.decoder, self.mask_vector, self.mask_id = decoder, mask_vector, mask_id

    def forward(self, input_ids: torch.Tensor):
        embeds = self.decoder.embed_tokens(input_ids)
        embeds = torch.where((input_ids == self.mask_id)[..., None], self.mask_vector.to(embeds.dtype), embeds)
        return self.decoder(inputs_embeds=embeds)


class AdaptedDLM(torch.nn.Module):
    """base + LoRA + mask vector, shaped like Qwen2ForCausalLM for dlm_loss (`.model`, `.lm_head`)."""

    def __init__(self, peft_model, mask_vector: torch.Tensor, mask_id: int = MASK_ID) -> None:
        super().__init__()
        self.peft, self.mask_id = peft_model, mask_id
        self.mask_vector = torch.nn.Parameter(mask_vector.float())
        inner = peft_model.base_model.model  # the Qwen2ForCausalLM, its linears wrapped by LoRA
        inner.config.is_causal = False  # bidirectional: transformers reads it at every forward
        self.model = MaskedInputs(inner.model, self.mask_vector, mask_id)
        self.lm_head = inner.lm_head

    @torch.no_grad()
    def base_logits(self, ids: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The base model's own next-token logits at (rows, positions) of `ids`: adapters off,
        causal attention, so position i sees ids up to i (the teacher of `--distill`)."""
        inner = self.peft.base_model.model
        with self.peft.disable_adapter():
            inner.config.is_causal = True
            try:
                hidden = inner.model(input_ids=ids).last_hidden_state
            finally:
                inner.config.is_causal = False
        return inner.lm_head(hidden[rows, positions]).float()

    def param_groups(self, lr: float, mask_lr: float) -> list[dict]:
        lora = [p for n, p in self.peft.named_parameters() if p.requires_grad]
        return [{"params": lora, "lr": lr}, {"params": [self.mask_vector], "lr": mask_lr}]

    def save(self, folder: Path) -> None:
        self.peft.save_pretrained(str(folder))
        save_file({"mask_vector": self.mask_vector.detach().cpu().contiguous()}, str(folder / MASK_FILE))


def load_base(base_folder: str | Path, device: torch.device, dtype: torch.dtype):
    from transformers import Qwen2ForCausalLM

    # transformers declares PreTrainedModel.to through @wraps(Module.to), which mypy reads as unbound
    model = Qwen2ForCausalLM.from_pretrained(str(base_folder), dtype=dtype).to(device)  # type: ignore[arg-type]
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def new_lora(base, rank: int = 16, alpha: int = 32):
    """Fresh LoRA adapters on every linear layer (B = 0: at first the model computes exactly the base)."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        base, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    )


def load_lora(folder: str | Path, base_folder, device, dtype):
    """The base with a checkpoint's adapters, trainable (to resume or warm-start)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(base_folder, device, dtype), str(folder), is_trainable=True)


def new_adapted(
    base_folder,
    device,
    dtype,
    rank: int = 16,
    alpha: int = 32,
    mask_init: str = "<|endoftext|>",
    tokens: dict[str, int] = DREAM_TOKENS,
) -> AdaptedDLM:
    """Fresh adapters and a mask vector started from `mask_init`'s embedding (measured best of the
    rows tried: see the README)."""
    base = load_base(base_folder, device, dtype)
    init_id = dream_tokenizer(base_folder, tokens).convert_tokens_to_ids(mask_init)
    mask = base.get_input_embeddings().weight[init_id].detach().clone()
    return AdaptedDLM(new_lora(base, rank, alpha), mask, tokens["<|mask|>"])


def load_adapted(folder: str | Path, base_folder, device, dtype, tokens: dict[str, int] = DREAM_TOKENS) -> AdaptedDLM:
    peft_model = load_lora(folder, base_folder, device, dtype)
    mask = load_file(str(Path(folder) / MASK_FILE))["mask_vector"].to(device)
    return AdaptedDLM(peft_model, mask, tokens["<|mask|>"])


# --- the learning curve ----------------------------------------------------------------------
@torch.no_grad()
def masked_predictions(model, windows: torch.Tensor, kind: str, seed: int = 0):
    """Per held-out window [n, L]: (whether the top-1 prediction is right, the marginal's entropy
    in nats), each [masked tokens] in canvas order. `kind`: `random-15`, `random-50` (each token
    masked independently) or `span-32` (one span of 32 tokens mid-window)."""
    g = torch.Generator().manual_seed(seed)
    device, mask_id = model.lm_head.weight.device, model.mask_id
    for ids in windows:
        if kind == "span-32":
            start = int(torch.randint(len(ids) // 4, len(ids) - 32 - len(ids) // 8, (), generator=g))
            masked = torch.zeros(len(ids), dtype=torch.bool)
            masked[start : start + 32] = True
        else:
            masked = torch.rand(len(ids), generator=g) < int(kind.split("-")[1]) / 100
            masked[0] = False
        noisy = torch.where(masked, mask_id, ids)
        hidden = model.model(input_ids=noisy[None].to(device)).last_hidden_state[0]
        cols = masked.nonzero().squeeze(1)
        logits = model.lm_head(hidden[shifted_positions(cols).to(device)]).float()
        logits[:, mask_id] = float("-inf")
        yield logits.argmax(-1).cpu() == ids[cols], entropy(logits).cpu()


def masked_top1(model, windows: torch.Tensor, kind: str, seed: int = 0) -> float:
    """Top-1 accuracy on the masked tokens of held-out windows (kinds: `masked_predictions`)."""
    right = total = 0
    for correct, _ in masked_predictions(model, windows, kind, seed):
        right += int(correct.sum())
        total += len(correct)
    return right / max(total, 1)


def span_profile(model, windows: torch.Tensor, seed: int = 0) -> dict[str, list[float]]:
    """The span-32 metric by position in the span (1 = the token after the visible prefix):
    top-1 accuracy and mean entropy (nats) over windows; their mean over positions is span-32."""
    correct, entropies = zip(*masked_predictions(model, windows, "span-32", seed))
    return {
        "top1": torch.stack(correct).float().mean(0).tolist(),
        "entropy": torch.stack(entropies).mean(0).tolist(),
    }


def curve_metrics(windows: torch.Tensor):
    def metrics(model) -> dict:
        was = model.training
        model.eval()
        out = {kind: masked_top1(model, windows, kind) for kind in ("random-15", "random-50", "span-32")}
        model.train(was)
        return out

    return metrics


def plot_curve(log_path: str | Path, out: str | Path, tokens_per_step: int, targets: dict[str, float]) -> list[dict]:
    """The learning curve from a run's log.jsonl: masked top-1 on held-out windows against steps
    (and tokens), with the targets drawn; returns the validation records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    curve = [r for r in rows if r.get("event") == "val" and "span-32" in r]
    if not curve:
        raise ValueError(f"{log_path} has no validation with top-1 metrics yet (the first comes at --val-every)")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [r["step"] for r in curve]
    for i, kind in enumerate(("random-15", "random-50", "span-32")):
        ax.plot(steps, [r[kind] for r in curve], marker="o", ms=3, color=f"C{i}", label=f"{kind} masks")
        if kind in targets:
            ax.axhline(targets[kind], color=f"C{i}", ls="--", lw=0.8)
    ax.set(
        xlabel=f"steps (x {tokens_per_step} tokens)",
        ylabel="top-1 on masked held-out tokens",
        ylim=(0, 1),
        title="Qwen2.5-Coder-0.5B adapted to masked diffusion (LoRA); dashed: targets",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return curve


def eval_windows(data: SequenceData, n: int, seq_len: int) -> torch.Tensor:
    """n fixed held-out windows of full length (the same ones for every checkpoint)."""
    full = (data.lengths >= seq_len).nonzero().squeeze(1)
    if len(full) == 0:
        raise ValueError("no held-out sequence fills a whole window: add held-out files or lower --seq-len")
    pick = full[torch.arange(min(n, len(full))) * len(full) // min(n, len(full))]
    return data.batch(pick).ids


# --- training and export ---------------------------------------------------------------------
def check_distill(weight: float) -> None:
    if not 0 <= weight <= 1:
        raise ValueError(f"--distill {weight}: give a weight from 0 (no teacher) to 1 (soft targets only)")


def train_adapt(
    tokenizer,
    base_folder,
    train_data: SequenceData,
    val_data: SequenceData,
    cfg: LoopConfig,
    *,
    device: torch.device,
    dtype: torch.dtype,
    rank: int,
    mask_lr: float,
    noise: DlmNoise,
    curve_windows: int = 10,
    tokens: dict[str, int] = DREAM_TOKENS,
    init: str | Path | None = None,
    distill: float = 0.0,
) -> TrainResult:
    """Train (or resume from <out>/last, or warm-start from the checkpoint `init`, e.g. the shipped
    adapter: its weights without its optimizer state) the adapter and mask vector; `distill` > 0
    mixes the base's own causal predictions into the loss as soft targets (dlm_loss)."""
    check_distill(distill)
    model = starting_model(
        cfg,
        init,
        lambda folder, dev: load_adapted(folder, base_folder, dev, dtype, tokens),
        lambda: new_adapted(base_folder, device, dtype, rank, tokens=tokens),
        device,
    )
    teacher = model.base_logits if distill > 0 else None
    loss = partial(
        dlm_loss, mask_id=model.mask_id, pad=tokenizer.pad_token_id, noise=noise, teacher=teacher, distill=distill
    )
    windows = eval_windows(val_data, curve_windows, train_data.seq_len)

    def save(m: AdaptedDLM, folder: Path) -> None:
        m.save(folder)
        (folder / "base.json").write_text(json.dumps({"base": str(base_folder), "tokens": tokens}) + "\n")

    return train(
        model,
        loss,
        save,
        train_data,
        val_data,
        cfg,
        param_groups=model.param_groups(cfg.lr, mask_lr),
        metrics=curve_metrics(windows),
    )


def export_dream(
    adapter_folder: str | Path,
    base_folder: str | Path,
    out: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    tokens: dict[str, int] = DREAM_TOKENS,
) -> Path:
    """Merge base + adapter + mask vector into a Dream-format folder that DreamDLM.load reads."""
    from codila_engine.train.models import save_dream

    model = load_adapted(adapter_folder, base_folder, torch.device("cpu"), dtype, tokens)
    merged = model.peft.merge_and_unload()
    with torch.no_grad():  # Dream keeps lm_head apart from the embeddings (tie_word_embeddings false)
        merged.lm_head.weight = torch.nn.Parameter(merged.lm_head.weight.detach().clone())
        merged.get_input_embeddings().weight[model.mask_id] = model.mask_vector.to(merged.dtype)
    merged.config.tie_word_embeddings = False
    tok = dream_tokenizer(base_folder, tokens)
    merged.config.update(
        {
            "mask_token_id": model.mask_id,
            "eos_token_id": tok.pad_token_id,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tokens["<|beginoftext|>"],
        }
    )
    return save_dream(merged, tok, out)
