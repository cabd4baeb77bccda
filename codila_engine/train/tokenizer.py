"""A small byte-level BPE tokenizer for Python, with the special tokens Dream and Qwen3 use.

Byte-level so any text round-trips (no unknown token, no Unicode normalisation); the
pre-tokenizer is Qwen2's regex, so digits are split one by one and runs of spaces (Python's
indentation) become tokens of their own. Saved in Hugging Face format so the engine loads it
with PreTrainedTokenizerFast / AutoTokenizer and finds eos, pad and mask already set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOS = "<|endoftext|>"  # end of text and padding, as in Dream and Qwen
MASK = "<|mask|>"  # the DLM's mask, as in Dream
THINK = "<think>"  # the AR's soft tokens sit between these two, as in Qwen3
END_THINK = "</think>"
SPECIAL_TOKENS = (EOS, MASK, THINK, END_THINK)

# Qwen2's pre-tokenizer split: words, single digits, punctuation runs, newlines, space runs.
_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192, show_progress: bool = True):
    """Train the BPE on `texts`; returns a transformers PreTrainedTokenizerFast.

    The special tokens take ids 0..3, so `<|endoftext|>` is 0 in every tokenizer we train.
    """
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size {vocab_size} is too small: the byte alphabet alone needs {len(alphabet)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        mask_token=MASK,
        additional_special_tokens=[THINK, END_THINK],
    )


def save_tokenizer(tokenizer, folder: str | Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json.

    transformers 5 writes neither special_tokens_map.json nor a class name that version 4
    knows; both are written here so the folder loads in either.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    extra = getattr(tokenizer, "extra_special_tokens", None) or []
    special = {
        **tokenizer.special_tokens_map,
        "additional_special_tokens": list(extra.values() if isinstance(extra, dict) else extra),
    }
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(special)
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n")
    return folder


def load_tokenizer(folder: str | Path):
    """The tokenizer in `folder`: ours, or a model folder's (tokenizer.json or Qwen2's BPE files)."""
    from codila_engine.models.checkpoint import load_tokenizer as load_model_tokenizer

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
        raise FileNotFoundError(
            f"no tokenizer in {folder}: train one with `codila train tokenizer --out {folder}` "
            "or pass a model folder that has tokenizer.json"
        )
    tokenizer = load_model_tokenizer(folder)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer in {folder} has no eos token set in tokenizer_config.json")
    return tokenizer


def token_id(tokenizer, token: str, purpose: str) -> int:
    """The id of a special token; an error naming it if the tokenizer lacks it."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(tid) != token:
        raise ValueError(f"the tokenizer has no {token!r} token, which {purpose} needs")
    return int(tid)


def pad_id(tokenizer) -> int:
    """Padding id: the pad token, else eos (Dream and Qwen pad with <|endoftext|>)."""
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
