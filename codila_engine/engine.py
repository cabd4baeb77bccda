"""The engine: the DLM, the AR and their vocabulary bridge, and decoding requests on them.

Either model may be absent: plain DLM decoding needs no AR, FIM decoding needs no DLM.
The CoDiLA algorithm itself is decoding/codila.py; `start` builds its step (or another decoder's).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import Callable, TypeVar

import torch

from codila_engine.models.ar import BlockDecoder, LocalAR
from codila_engine.decoding.baseline import DlmStep
from codila_engine.decoding.canvas import Canvas
from codila_engine.decoding.clock import Clock
from codila_engine.models.checkpoint import default_device, default_dtype
from codila_engine.decoding.codila import CodilaStep
from codila_engine.config import DecodeConfig
from codila_engine.decoding.events import Commit
from codila_engine.decoding.loop import CancelFlag, Decoding
from codila_engine.models.dlm import DreamDLM, Marginals
from codila_engine.decoding.dream import DreamSampler
from codila_engine.decoding.dual_cache import DualCacheDLM
from codila_engine.decoding.fim import FimSampler, FimTokens, StopRules
from codila_engine.models.static_ar import StaticBlockDecoder
from codila_engine.models.vocab import VocabBridge, build_bridge

STATIC_DECODERS = 4  # fast-path decoders kept per engine (one per scope, block size and sampling)
AR_BACKENDS = ("torch", "vllm")  # where CoDiLA's block decode runs: in this process, or on a vLLM engine
Part = TypeVar("Part")


def need(part: Part | None, what: str) -> Part:
    """`part` of an engine (a model, the bridge) that the decoder about to run needs. `decoder_for`
    has checked the models against the decoder, so this fails only for a caller that did not ask it."""
    if part is None:
        raise ValueError(f"this engine has no {what}")
    return part


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
        block_decoder: BlockDecoder | None = None,
    ) -> None:
        """`bridge` is normally built from the two tokenizers; benchmarks on tokenizer-less random
        models pass their own. `block_decoder` runs the codila decoder's AR step instead of `ar`
        (the vLLM backend, models/vllm_ar.py); the engine closes it in `close()`."""
        if dlm is None and ar is None:
            raise ValueError("an engine needs a DLM, an AR or both")
        self.dlm = dlm
        self.ar = ar
        self.bridge = bridge
        self.block_decoder = block_decoder
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
        ar_backend: str = "torch",
        vllm_args: dict | None = None,
    ) -> "Engine":
        """`dtype`: a torch dtype, or a name as `--dtype` takes it (None or "auto": chosen per machine).
        `ar_backend`: "torch" decodes CoDiLA's blocks in this process (plain or fast path); "vllm"
        starts one vLLM engine for the AR now (models/vllm_ar.py; `vllm_args` go to it) and
        every codila decode uses it until `close()`."""
        if ar_backend not in AR_BACKENDS:
            raise ValueError(f"ar_backend must be one of {', '.join(AR_BACKENDS)}, not {ar_backend!r}")
        device = torch.device(device) if device is not None else default_device()
        if not isinstance(dtype, torch.dtype):
            dtype = default_dtype(device, dtype)
        dlm = DreamDLM.load(dlm_path, device, dtype) if dlm_path is not None else None
        ar = LocalAR.load(ar_path, device, dtype) if ar_path is not None else None
        engine = cls(dlm, ar, think_ids)
        if ar_backend == "vllm" and ar is not None and ar_path is not None and dlm is not None:  # codila's blocks
            from codila_engine.models.vllm_ar import VllmBlockDecoder

            engine.block_decoder = VllmBlockDecoder(ar_path, ar.embedding, dtype=dtype, **(vllm_args or {}))
        return engine

    def close(self) -> None:
        """Stop what runs beside this process: the vLLM engine of the vllm AR backend (its
        engine-core process exits). Idempotent; also run when the engine is garbage-collected."""
        close = getattr(self.block_decoder, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def static_decoder(self, cfg: DecodeConfig) -> StaticBlockDecoder:
        """The fast AR path for this scope, block size and sampling; built (and on CUDA,
        graph-captured) once and reused. The STATIC_DECODERS most recently used are kept: each
        holds its own KV cache and graph, so settings that keep changing must not pile them up."""
        key = (cfg.scope, cfg.block_size, cfg.temperature, cfg.top_p)
        if key not in self._static:
            self._static[key] = StaticBlockDecoder(
                need(self.ar, "AR"),
                cfg.scope,
                cfg.block_size,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                allowed=need(self.bridge, "vocabulary bridge").ar_allowed,
            )
            while len(self._static) > STATIC_DECODERS:
                self._static.popitem(last=False)
        self._static.move_to_end(key)
        return self._static[key]

    @property
    def tokenizer(self):
        return self.dlm.tokenizer if self.dlm is not None else need(self.ar, "AR").tokenizer

    @property
    def device(self) -> torch.device:
        return self.dlm.device if self.dlm is not None else need(self.ar, "AR").embedding.device

    @property
    def dtype(self) -> torch.dtype:
        return (self.dlm.model if self.dlm is not None else need(self.ar, "AR").model).dtype

    @property
    def runs_on(self) -> dict[str, str]:
        """Where the models run, as clients are told: {"device": "cpu", "dtype": "bfloat16"}."""
        return {"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch.")}

    @cached_property
    def fim_tokens(self) -> FimTokens:
        """The AR's FIM and stop tokens, read once (an AR without them fails here, on first use)."""
        ar = need(self.ar, "AR")
        return FimTokens.of(ar.tokenizer, (ar.eos_id,))

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
        span_length = cfg.span_tokens
        if cfg.decoder == "fim":  # the AR reads prefix and suffix; three FIM tokens around them
            ar = need(self.ar, "AR")
            if ar.eos_id is None:
                raise ValueError("the AR names no EOS token (tokenizer or config.json): the fim decoder needs one")
            model, positions = "AR", ar.max_positions - 3
            mask_id, eos_id, pad_id = -1, ar.eos_id, self.tokenizer.pad_token_id
        else:
            dlm = need(self.dlm, "DLM")
            model, positions = "DLM", dlm.model.config.max_position_embeddings
            mask_id, eos_id, pad_id = dlm.mask_id, dlm.eos_id, dlm.pad_id
        budget = min(cfg.max_context, positions) - span_length
        if budget < 0:
            raise ValueError(f"a span of {span_length} tokens does not fit the {model}'s {positions} positions")
        keep_suffix = min(len(suffix_ids), max(budget // 4, budget - len(prefix_ids)))
        keep_prefix = budget - keep_suffix
        return Canvas(
            prefix_ids[len(prefix_ids) - min(len(prefix_ids), keep_prefix) :],
            suffix_ids[:keep_suffix],
            span_length,
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
        rules = StopRules.of(prefix, suffix, cfg.single_line)
        if cfg.decoder == "fim":  # stops decoding where the rules say
            return self.start(canvas, cfg, cancel, rules=rules)
        decoding = self.start(canvas, cfg, cancel)  # a single line: decoded until it is settled, then cut
        decoding.line_end = (lambda text: rules.check(text, final=True)[0]) if cfg.single_line else None
        return decoding

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
        dlm: Marginals | None = self.dlm
        if cfg.dual_cache and self.dlm is not None:
            dlm = DualCacheDLM(self.dlm, cfg.dual_cache)
        step: Callable[[Clock], Commit]
        if cfg.decoder == "fim":
            step = FimSampler(need(self.ar, "AR"), self.fim_tokens, canvas, cfg, rules or StopRules(), generator)
        elif cfg.decoder == "dream":
            step = DreamSampler(need(dlm, "DLM"), canvas, cfg, generator)
        elif cfg.decoder == "codila":
            ar: BlockDecoder
            if self.block_decoder is not None:  # the vllm backend (cfg.fast is the torch backend's)
                ar = self.block_decoder
            else:
                ar = self.static_decoder(cfg) if cfg.fast else need(self.ar, "AR")
            step = CodilaStep(need(dlm, "DLM"), ar, need(self.bridge, "vocabulary bridge"), canvas, cfg, generator)
        else:
            step = DlmStep(need(dlm, "DLM"), canvas, cfg, generator)
        return Decoding(step, canvas, decode_text or self.decode_ids, cfg.placeholder, cancel, profile, cfg.decoder)
