"""The engine: the DLM, the AR and their vocabulary bridge, and decoding requests on them.

Either model may be absent: plain DLM decoding needs no AR, FIM decoding needs no DLM.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cached_property, partial
from pathlib import Path

import torch

from codila_engine.models.ar import LocalAR
from codila_engine.decoding.baseline import dlm_step
from codila_engine.decoding.canvas import Canvas
from codila_engine.models.checkpoint import default_device, default_dtype
from codila_engine.decoding.codila import codila_step
from codila_engine.config import DecodeConfig
from codila_engine.decoding.loop import CancelFlag, Decoding
from codila_engine.models.dlm import DreamDLM
from codila_engine.decoding.dream import DreamSampler
from codila_engine.decoding.dual_cache import DualCacheDLM
from codila_engine.decoding.fim import FimSampler, FimTokens, StopRules
from codila_engine.models.static_ar import StaticBlockDecoder
from codila_engine.models.vocab import VocabBridge, build_bridge

STATIC_DECODERS = 4  # fast-path decoders kept per engine (one per scope, block size and sampling)


def turn_ends(tokenizer) -> tuple[int, ...]:
    """Ids that end the text besides EOS and pad: `<|im_end|>`, where Instruct checkpoints
    (Dream-Coder-Instruct, Qwen2.5-Coder-Instruct) end their turn, whatever config.json names EOS."""
    if tokenizer is None:
        return ()
    im_end = tokenizer.get_vocab().get("<|im_end|>")
    return () if im_end is None else (im_end,)


class Engine:
    def __init__(
        self,
        dlm: DreamDLM | None,
        ar: LocalAR | None = None,
        think_ids: tuple[int, int] | None = None,
        bridge: VocabBridge | None = None,
    ) -> None:
        """`bridge` is normally built from the two tokenizers; benchmarks on tokenizer-less random
        models pass their own."""
        if dlm is None and ar is None:
            raise ValueError("an engine needs a DLM, an AR or both")
        self.dlm = dlm
        self.ar = ar
        self.bridge = bridge
        self._static: OrderedDict[tuple, StaticBlockDecoder] = OrderedDict()  # least recently used first
        self.ends = turn_ends(self.tokenizer)  # once: reading a 150k vocabulary takes ~0.15 s
        if dlm is not None and ar is not None and bridge is None:
            self.bridge = build_bridge(
                dlm.tokenizer,
                ar.tokenizer,
                dlm_rows=dlm.vocab_rows,
                ar_rows=ar.embedding.shape[0],
                mask_id=dlm.mask_id,
                eos_id=dlm.eos_id,
                think_ids=think_ids,
                device=dlm.device,
            )

    @classmethod
    def load(
        cls,
        dlm_path: str | Path | None,
        ar_path: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        think_ids: tuple[int, int] | None = None,
    ) -> "Engine":
        """`dtype`: a torch dtype, or a name as `--dtype` takes it (None or "auto": chosen per machine)."""
        device = torch.device(device) if device is not None else default_device()
        if not isinstance(dtype, torch.dtype):
            dtype = default_dtype(device, dtype)
        dlm = DreamDLM.load(dlm_path, device, dtype) if dlm_path is not None else None
        ar = LocalAR.load(ar_path, device, dtype) if ar_path is not None else None
        return cls(dlm, ar, think_ids)

    def static_decoder(self, cfg: DecodeConfig) -> StaticBlockDecoder:
        """The fast AR path for this scope, block size and sampling; built (and on CUDA,
        graph-captured) once and reused. The STATIC_DECODERS most recently used are kept: each
        holds its own KV cache and graph, so settings that keep changing must not pile them up."""
        key = (cfg.scope, cfg.block_size, cfg.temperature, cfg.top_p)
        if key not in self._static:
            self._static[key] = StaticBlockDecoder(
                self.ar,
                cfg.scope,
                cfg.block_size,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                allowed=self.bridge.ar_allowed,
            )
            while len(self._static) > STATIC_DECODERS:
                self._static.popitem(last=False)
        self._static.move_to_end(key)
        return self._static[key]

    @property
    def tokenizer(self):
        return self.dlm.tokenizer if self.dlm is not None else self.ar.tokenizer

    @property
    def device(self) -> torch.device:
        return self.dlm.device if self.dlm is not None else self.ar.embedding.device

    @property
    def dtype(self) -> torch.dtype:
        return (self.dlm.model if self.dlm is not None else self.ar.model).dtype

    @cached_property
    def fim_tokens(self) -> FimTokens:
        """The AR's FIM and stop tokens, read once (an AR without them fails here, on first use)."""
        return FimTokens.of(self.ar.tokenizer, (self.ar.eos_id,))

    def decoders(self) -> tuple[str, ...]:
        """The decoders these models can run."""
        runs = (("codila", self.dlm and self.ar), ("dlm", self.dlm), ("dream", self.dlm), ("fim", self.ar))
        return tuple(name for name, ok in runs if ok)

    def decoder_for(self, decoder: str) -> str:
        """The decoder that runs: `auto` is codila for a DLM + AR pair, fim for an AR alone, dlm
        for a DLM alone; a named decoder is checked against the models."""
        if decoder == "auto":
            return "codila" if self.dlm and self.ar else "fim" if self.ar else "dlm"
        if decoder not in self.decoders():
            need = {
                "codila": "a DLM and an AR (--dlm PATH --ar PATH)",
                "dlm": "a DLM (--dlm PATH)",
                "dream": "a DLM (--dlm PATH)",
                "fim": "an AR (--ar PATH, or the default model)",
            }[decoder]
            raise ValueError(f"the {decoder} decoder needs {need}; these models run: {', '.join(self.decoders())}")
        return decoder

    def resolve(self, cfg: DecodeConfig) -> DecodeConfig:
        """`cfg` with the decoder that will run named (never `auto`)."""
        return cfg.with_options(decoder=self.decoder_for(cfg.decoder))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode_ids(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def canvas(self, prefix: str, suffix: str, cfg: DecodeConfig) -> Canvas:
        """Tokenise and lay out the canvas, keeping the context nearest the span."""
        cfg = self.resolve(cfg)
        prefix_ids, suffix_ids = self.encode(prefix), self.encode(suffix)
        if cfg.decoder == "fim":  # the AR reads prefix and suffix; three FIM tokens around them
            model, positions, special = "AR", self.ar.max_positions - 3, self.ar.eos_id
            mask_id, eos_id, pad_id = -1, special, self.tokenizer.pad_token_id
        else:
            model, positions = "DLM", self.dlm.model.config.max_position_embeddings
            mask_id, eos_id, pad_id = self.dlm.mask_id, self.dlm.eos_id, self.dlm.pad_id
        budget = min(cfg.max_context, positions) - cfg.span_tokens
        if budget < 0:
            raise ValueError(f"a span of {cfg.span_tokens} tokens does not fit the {model}'s {positions} positions")
        keep_suffix = min(len(suffix_ids), max(budget // 4, budget - len(prefix_ids)))
        keep_prefix = budget - keep_suffix
        return Canvas(
            prefix_ids[len(prefix_ids) - min(len(prefix_ids), keep_prefix) :],
            suffix_ids[:keep_suffix],
            cfg.span_tokens,
            cfg.block_size,
            mask_id=mask_id,
            eos_id=eos_id,
            pad_id=pad_id,
            more_ends=self.ends,
            device=self.device,
        )

    def decode(
        self, prefix: str, suffix: str = "", cfg: DecodeConfig = DecodeConfig(), cancel: CancelFlag | None = None
    ) -> Decoding:
        """A decode of the span between prefix and suffix (empty suffix = completion).

        Iterate it for streaming events; `.run()` for the result only.
        """
        cfg = self.resolve(cfg)
        canvas = self.canvas(prefix, suffix, cfg)
        rules = StopRules.of(prefix, suffix, cfg.single_line) if cfg.decoder == "fim" else None
        return self.start(canvas, cfg, cancel, rules=rules)

    def start(
        self,
        canvas: Canvas,
        cfg: DecodeConfig,
        cancel: CancelFlag | None = None,
        *,
        profile: bool = True,
        decode_text=None,
        rules: StopRules | None = None,
    ) -> Decoding:
        """A decode of a canvas laid out already. `profile` times each phase (one host sync per
        phase on CUDA); `decode_text` replaces the tokenizer for drafts (benchmarks); `rules`
        are the fim decoder's stop rules (default: EOS and the token limit only)."""
        cfg = self.resolve(cfg)
        generator = None
        if cfg.seed is not None:
            generator = torch.Generator(self.device).manual_seed(cfg.seed)
        dlm = DualCacheDLM(self.dlm, cfg.dual_cache) if cfg.dual_cache and self.dlm is not None else self.dlm
        if cfg.decoder == "fim":
            step = FimSampler(self.ar, self.fim_tokens, canvas, cfg, rules or StopRules(), generator)
        elif cfg.decoder == "dream":
            step = DreamSampler(dlm, canvas, cfg, generator)
        elif cfg.decoder == "codila":
            ar = self.static_decoder(cfg) if cfg.fast else self.ar
            step = partial(codila_step, dlm, ar, self.bridge, canvas, cfg, generator)
        else:
            step = partial(dlm_step, dlm, canvas, cfg, generator)
        return Decoding(step, canvas, decode_text or self.decode_ids, cfg.placeholder, cancel, profile, cfg.decoder)
