"""Documents as fixed-length token sequences, each with a target region.

Code files are cut into windows of `seq_len` tokens (the last window of a long file is
aligned to its end, a short file is padded); every position is a target. An instruction pair
becomes one sequence, prompt then response then EOS, and only the response (with the padding
after it, which teaches the model where to stop) is a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from codila_engine.train.corpus import Document
from codila_engine.train.tokenizer import pad_id

_ENCODE_CHUNK = 256  # documents per tokenizer call: bounds the memory of Python int lists


@dataclass
class Batch:
    ids: torch.Tensor  # long [b, L], padded with pad_id
    lengths: torch.Tensor  # long [b]: tokens before the padding
    target_starts: torch.Tensor  # long [b]: first position of the target region


@dataclass
class SequenceData:
    tokens: torch.Tensor  # int32 [T]: every sequence's real tokens back to back
    starts: torch.Tensor  # long [N]: where each sequence starts in `tokens`
    lengths: torch.Tensor  # long [N]
    target_starts: torch.Tensor  # long [N]
    seq_len: int
    pad_id: int

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def batch(self, index: torch.Tensor) -> Batch:
        lengths = self.lengths[index]
        offsets = torch.arange(self.seq_len)
        real = offsets < lengths[:, None]
        gather = (self.starts[index, None] + offsets).clamp_max(max(len(self.tokens) - 1, 0))
        ids = torch.where(real, self.tokens[gather].long(), self.pad_id)
        return Batch(ids, lengths, self.target_starts[index])

    def packed(self) -> "SequenceData":
        """Back-to-back windows over all documents (EOS between them), no padding.

        A corpus of short files padded to seq_len is mostly EOS, and a model trained on it
        learns to predict EOS; packing spends every position on code. Code files only: an
        instruction pair's prompt would land inside a window.
        """
        if bool((self.target_starts > 0).any()):
            raise ValueError(
                "--pack is for directories of code files, not instruction data (it would mix prompts into the targets)"
            )
        n = max((len(self.tokens) - 1) // self.seq_len, 1)
        starts = torch.arange(n, dtype=torch.long) * self.seq_len
        lengths = torch.full((n,), min(self.seq_len, len(self.tokens)), dtype=torch.long)
        return SequenceData(self.tokens, starts, lengths, torch.zeros(n, dtype=torch.long), self.seq_len, self.pad_id)

    def save(self, path: Path, fingerprint: str) -> None:
        tensors = {
            "tokens": self.tokens,
            "starts": self.starts,
            "lengths": self.lengths,
            "target_starts": self.target_starts,
        }
        meta = {"seq_len": str(self.seq_len), "pad_id": str(self.pad_id), "fingerprint": fingerprint}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> "SequenceData | None":
        """The cached sequences, or None when absent or made from other data or settings."""
        from safetensors import safe_open

        if not path.is_file():
            return None
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("fingerprint") != fingerprint:
            return None
        return cls.read(path)

    @classmethod
    def read(cls, path: Path) -> "SequenceData":
        """The sequences saved at `path`, whatever data made them."""
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        t = load_file(str(path))
        return cls(
            t["tokens"], t["starts"], t["lengths"], t["target_starts"], int(meta["seq_len"]), int(meta["pad_id"])
        )


def window_starts(n: int, seq_len: int) -> list[int]:
    """Starts of the windows covering n tokens: back to back, the last one ending at n."""
    if n <= seq_len:
        return [0]
    starts = list(range(0, n - seq_len, seq_len))
    return starts + [n - seq_len]


def format_prompt(tokenizer, prompt: str) -> str:
    """The prompt as the model sees it: its chat template if it has one, else prompt + newline."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt + "\n"


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def to_sequences(docs: list[Document], tokenizer, seq_len: int, progress: bool = True) -> tuple[SequenceData, int]:
    """Tokenize documents into sequences; returns them and how many pairs were too long to fit."""
    if seq_len < 8:
        raise ValueError(f"seq_len must be at least 8, got {seq_len}")
    eos = tokenizer.eos_token_id
    pieces: list[torch.Tensor] = []
    starts, lengths, targets = [], [], []
    total, too_long = 0, 0
    bar = tqdm(total=len(docs), desc="tokenizing", unit="doc", disable=not progress)
    for i in range(0, len(docs), _ENCODE_CHUNK):
        chunk = docs[i : i + _ENCODE_CHUNK]
        texts = _encode(tokenizer, [d.text for d in chunk])
        prompts = iter(_encode(tokenizer, [format_prompt(tokenizer, d.prompt) for d in chunk if d.prompt is not None]))
        for doc, text in zip(chunk, texts):
            prompt = next(prompts) if doc.prompt is not None else []
            ids = prompt + text + [eos]
            if prompt and len(ids) > seq_len:
                too_long += 1
                continue
            pieces.append(torch.tensor(ids, dtype=torch.int32))
            for s in window_starts(len(ids), seq_len):
                starts.append(total + s)
                lengths.append(min(seq_len, len(ids) - s))
                targets.append(len(prompt))
            total += len(ids)
        bar.update(len(chunk))
    bar.close()
    tokens = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.int32)
    data = SequenceData(
        tokens,
        torch.tensor(starts, dtype=torch.long),
        torch.tensor(lengths, dtype=torch.long),
        torch.tensor(targets, dtype=torch.long),
        seq_len,
        pad_id(tokenizer),
    )
    return data, too_long
