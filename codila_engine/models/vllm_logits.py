"""The vLLM logits processor behind models/vllm_ar.py: it runs inside vLLM, in its model runner.

vLLM hands every sampling step's logits [requests, V] to this processor before it samples
(a processor that is not argmax-invariant runs for greedy requests too, after vLLM's own
allowed-token masking and before temperature, top-p and the draw). For each request that
carries a `codila` entry in `SamplingParams.extra_args` it does what LocalAR.decode_blocks does
at that token:

1. masks the ids the DLM cannot take (the `allowed` mask, read once from a file);
2. measures the entropy of the masked distribution at temperature 1, exactly as the plain path
   does, and writes it into a small shared file that the caller reads when `generate` returns
   (vLLM itself only returns top-k logprobs, and those are taken before any masking);
3. forces the token where the block already has one (dynamic mode): every other logit goes to
   -inf, so greedy decoding and sampling both return it.

Imported only where vLLM is installed (it subclasses vLLM's LogitsProcessor).
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from codila_engine.sampling import entropy

KEY = "codila"  # SamplingParams.extra_args[KEY] = [entropy file, its size, offset, forced ids, mask file]


class Row(NamedTuple):
    entropy_file: str  # float32 values, shared with the caller
    file_size: int  # in values
    offset: int  # where this request's B entropies go
    forced: list[int]  # B ids, -1 where the AR chooses
    mask_file: str  # bool per AR id; "" for no mask
    output: list[int]  # vLLM's live list of this request's output ids: its length is the step


class CodilaLogitsProcessor(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.device = torch.device(device)
        self.rows: dict[int, Row] = {}  # batch index -> row
        self.files: dict[str, torch.Tensor] = {}  # entropy files, mapped
        self.masks: dict[str, torch.Tensor] = {}  # allowed masks, on the device

    def is_argmax_invariant(self) -> bool:
        return False  # masking and forcing change the greedy choice

    @staticmethod
    def _row(params, _prompt, output: list[int]) -> Row | None:
        spec = (params.extra_args or {}).get(KEY)
        if spec is None:
            return None
        entropy_file, file_size, offset, forced, mask_file = spec
        return Row(entropy_file, file_size, offset, forced, mask_file, output)

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.rows, batch_update, self._row)

    def _file(self, path: str, size: int) -> torch.Tensor:
        if path not in self.files:
            self.files[path] = torch.from_file(path, shared=True, size=size, dtype=torch.float32)
        return self.files[path]

    def _mask(self, path: str, vocab: int) -> torch.Tensor:
        if path not in self.masks:
            raw = torch.from_file(path, shared=False, size=vocab, dtype=torch.bool)
            self.masks[path] = raw.to(self.device)
        return self.masks[path]

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        groups: dict[tuple[str, int, str], list[int]] = defaultdict(list)
        for index, row in self.rows.items():
            if index < logits.shape[0] and len(row.output) < len(row.forced):
                groups[row.entropy_file, row.file_size, row.mask_file].append(index)
        for (path, size, mask_path), indices in groups.items():
            rows = [self.rows[i] for i in indices]
            at = torch.tensor(indices, device=logits.device)
            sub = logits[at].float()
            if mask_path:
                sub = sub.masked_fill(~self._mask(mask_path, sub.shape[-1]), float("-inf"))
            steps = [len(r.output) for r in rows]
            where = torch.tensor([r.offset + j for r, j in zip(rows, steps)])
            self._file(path, size)[where] = entropy(sub).cpu()
            forced = torch.tensor([r.forced[j] for r, j in zip(rows, steps)], device=logits.device)
            is_forced = forced >= 0
            if bool(is_forced.any()):
                onehot = torch.full_like(sub, float("-inf"))
                onehot.scatter_(1, forced.clamp_min(0)[:, None], 0.0)
                sub = torch.where(is_forced[:, None], onehot, sub)
            logits[at] = sub.to(logits.dtype)
        return logits
