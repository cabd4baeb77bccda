"""Tiny random-weight models with the real architectures, saved as real checkpoint folders.

The DLM is a Dream-format Qwen2 checkpoint, the AR a Qwen3 one. Their tokenizers share an
ordinary BPE vocabulary; like Dream and Qwen3 they differ only at the DLM's own special ids
(`<|beginoftext|>`, `<|mask|>` where the AR has tool-response tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "if x > 0:\n    y = x * 2\nelse:\n    y = -x\n",
    "import os\nprint(os.path.join('a', 'b'))\n",
    "while n:\n    n -= 1\n# caf\u00e9 \u00fcber \u6570\u636e\n",
]
DLM_SPECIALS = ["<|endoftext|>", "<|beginoftext|>", "<|mask|>"]
AR_SPECIALS = ["<|endoftext|>", "<tool_response>", "</tool_response>", "<think>", "</think>"]


def base_tokenizer(vocab_size: int = 260) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return tok


def save_tokenizer(tok: Tokenizer, specials: list[str], folder: Path, **roles) -> PreTrainedTokenizerFast:
    tok = Tokenizer.from_str(tok.to_str())
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **roles)
    fast.save_pretrained(str(folder))
    return fast


def build_pair(root: Path, *, swap_ordinary: bool = False, seed: int = 0) -> tuple[Path, Path]:
    """Write a DLM and an AR folder under root; swap_ordinary breaks the shared vocabulary."""
    torch.manual_seed(seed)
    base = base_tokenizer()
    dlm_dir, ar_dir = root / "dlm", root / "ar"
    dlm_tok = save_tokenizer(
        base, DLM_SPECIALS, dlm_dir, eos_token="<|endoftext|>", pad_token="<|endoftext|>", mask_token="<|mask|>"
    )
    ar_base = base
    if swap_ordinary:
        vocab = base.get_vocab()
        a, b = sorted(vocab, key=vocab.get)[100:102]
        data = json.loads(base.to_str())
        data["model"]["vocab"][a], data["model"]["vocab"][b] = vocab[b], vocab[a]
        ar_base = Tokenizer.from_str(json.dumps(data))
    ar_tok = save_tokenizer(ar_base, AR_SPECIALS, ar_dir, eos_token="<|endoftext|>", pad_token="<|endoftext|>")

    eos = dlm_tok.convert_tokens_to_ids("<|endoftext|>")
    mask = dlm_tok.convert_tokens_to_ids("<|mask|>")
    bos = dlm_tok.convert_tokens_to_ids("<|beginoftext|>")
    dlm_cfg = Qwen2Config(
        vocab_size=len(dlm_tok) + 8,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        is_causal=False,
    )
    Qwen2ForCausalLM(dlm_cfg).save_pretrained(str(dlm_dir))
    cfg = json.loads((dlm_dir / "config.json").read_text())
    cfg.update(
        architectures=["DreamModel"],
        model_type="Dream",
        mask_token_id=mask,
        eos_token_id=eos,
        pad_token_id=eos,
        bos_token_id=bos,
    )
    cfg.pop("is_causal", None)
    (dlm_dir / "config.json").write_text(json.dumps(cfg, indent=2))

    ar_cfg = Qwen3Config(
        vocab_size=len(ar_tok) + 4,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=eos,
    )
    Qwen3ForCausalLM(ar_cfg).save_pretrained(str(ar_dir))
    return dlm_dir, ar_dir


FIM_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]


def build_fim_model(root: Path, seed: int = 0) -> Path:
    """A tiny Qwen2.5-Coder-like AR folder: causal Qwen2 with the FIM special tokens. Special and
    padding rows of the (untied) head are zero and ordinary ones scaled up, so greedy decoding
    writes ordinary tokens instead of stopping at once."""
    torch.manual_seed(seed)
    folder = root / "fim"
    tok = save_tokenizer(base_tokenizer(), FIM_SPECIALS, folder, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    cfg = Qwen2Config(
        vocab_size=len(tok) + 4,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    )
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight.mul_(10)
        model.lm_head.weight[tok.convert_tokens_to_ids(FIM_SPECIALS)] = 0
        model.lm_head.weight[len(tok) :] = 0
    model.save_pretrained(str(folder))
    return folder


def build_qwen_like_base(root: Path, seed: int = 0) -> tuple[Path, dict[str, int]]:
    """A tiny causal Qwen2 folder whose vocabulary, like the GGUF's, ends in `[PADn]` placeholders
    at the ids where Dream puts its own tokens; returns the folder and those tokens' ids."""
    torch.manual_seed(seed)
    folder = root / "base"
    data = json.loads(base_tokenizer().to_str())
    vocab = data["model"]["vocab"]
    first = max(vocab.values()) + 1
    vocab.update({f"[PAD{i}]": i for i in range(first, first + 4)})
    tok = save_tokenizer(
        Tokenizer.from_str(json.dumps(data)),
        ["<|endoftext|>"],
        folder,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    cfg = Qwen2Config(
        vocab_size=len(tok) + 4,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(str(folder))
    return folder, {"<|beginoftext|>": first, "<|mask|>": first + 1}


def sharpened_engine(pair: tuple[Path, Path], dtype: str | None = None):
    """The tiny pair loaded with every weight but the norms x 6: peaked distributions, so the
    entropies of different blocks are far apart and float rounding (of a batch, of a static
    cache) cannot flip a choice (the plain tiny models' block entropies tie to 1e-6)."""
    from codila_engine.engine import Engine

    engine = Engine.load(*pair, device="cpu", dtype=dtype)
    with torch.no_grad():
        for model in (engine.dlm.model, engine.ar.model):
            for name, p in model.named_parameters():
                if "norm" not in name:
                    p.mul_(6.0)
    return engine
