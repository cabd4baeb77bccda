"""The vocabulary interface between DLM and AR (paper, Appendix A.1.2).

The DLM's marginals reach the AR by token id, so both tokenizers must agree on every id they
both use. The only tolerated difference is a special token one model added for itself (Dream's
`<|mask|>` and `<|beginoftext|>` at 151666/151665, where Qwen3 has tool-response tokens; the
adapted AR's `<think>` at 151667, where the adapted DLM keeps the GGUF's `[PAD151667]`): those
ids are dropped from the marginal, as are ids the AR lacks and the mask id.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class VocabularyMismatch(ValueError):
    """The DLM and AR tokenizers give different tokens to the same id."""


@dataclass(frozen=True)
class VocabBridge:
    keep: torch.Tensor  # bool [n]: DLM ids whose marginal mass the AR receives (same id in the AR)
    ar_allowed: torch.Tensor  # bool [AR rows]: ids the AR may emit, i.e. tokens the canvas can hold
    eos_id: int
    think_id: int
    end_think_id: int

    @property
    def n(self) -> int:
        return int(self.keep.shape[0])


def _vocab(tokenizer) -> dict[int, str]:
    return {i: t for t, i in tokenizer.get_vocab().items()}


def _special_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    ids.update(tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens)
    return ids


def shared_ids(dlm_tokenizer, ar_tokenizer) -> tuple[list[int], list[int]]:
    """Ids the AR receives, and ids where one model has a special token of its own (dropped).

    Raises VocabularyMismatch naming the first differing ids otherwise.
    """
    dlm, ar = _vocab(dlm_tokenizer), _vocab(ar_tokenizer)
    special = _special_ids(dlm_tokenizer) | _special_ids(ar_tokenizer)
    keep, dropped, clashes = [], [], []
    for i in sorted(dlm.keys() & ar.keys()):
        if dlm[i] == ar[i]:
            keep.append(i)
        elif i in special:
            dropped.append(i)
        else:
            clashes.append(i)
    if clashes:
        shown = ", ".join(f"{i} ({dlm[i]!r} in the DLM, {ar[i]!r} in the AR)" for i in clashes[:5])
        raise VocabularyMismatch(
            f"the DLM and AR tokenizers disagree on {len(clashes)} ids both use; first: {shown}. "
            "CoDiLA passes DLM marginals to the AR by token id, so both models need the same "
            "vocabulary: use an AR trained with the DLM's tokenizer."
        )
    if not keep:
        raise VocabularyMismatch("the DLM and AR tokenizers share no token ids at all")
    return keep, dropped


def shared_only(logits: torch.Tensor, bridge: VocabBridge) -> torch.Tensor:
    """DLM logits [..., V_dlm] with every id the AR does not share at -inf: what the DLM may
    commit on its own, since the AR reads committed tokens back by id."""
    allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    allowed[: bridge.n] = bridge.keep.to(logits.device)
    return logits.masked_fill(~allowed, float("-inf"))


def _token_id(tokenizer, token: str, role: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(tid) != token:
        raise ValueError(
            f"the AR tokenizer has no {token!r} token ({role}); pass its id explicitly "
            "(think_ids=(open, close) / --think-ids)"
        )
    return int(tid)


def build_bridge(
    dlm_tokenizer,
    ar_tokenizer,
    *,
    dlm_rows: int,
    ar_rows: int,
    mask_id: int,
    eos_id: int,
    think_ids: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
) -> VocabBridge:
    """Check the two vocabularies and precompute how marginals map onto the AR's embedding rows."""
    keep_ids, _ = shared_ids(dlm_tokenizer, ar_tokenizer)
    n = min(dlm_rows, ar_rows)
    keep = torch.zeros(n, dtype=torch.bool)
    ids = torch.tensor([i for i in keep_ids if i < n], dtype=torch.long)
    keep[ids] = True
    if mask_id < n:
        keep[mask_id] = False
    if not (eos_id < n and keep[eos_id]):
        raise VocabularyMismatch(f"the EOS id {eos_id} is not shared by the DLM and the AR")
    if think_ids is None:
        think_ids = (
            _token_id(ar_tokenizer, "<think>", "opens the soft tokens"),
            _token_id(ar_tokenizer, "</think>", "closes the soft tokens"),
        )
    for tid in think_ids:
        if not 0 <= tid < ar_rows:
            raise ValueError(f"think id {tid} is outside the AR's embedding matrix ({ar_rows} rows)")
    ar_allowed = torch.zeros(ar_rows, dtype=torch.bool)
    ar_allowed[:n] = keep
    return VocabBridge(
        keep=keep.to(device),
        ar_allowed=ar_allowed.to(device),
        eos_id=eos_id,
        think_id=int(think_ids[0]),
        end_think_id=int(think_ids[1]),
    )
