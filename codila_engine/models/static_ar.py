"""The AR's block decode with static shapes, captured as one CUDA graph (the fast path).

Eager decoding of 10 candidate blocks costs ~100-200 ms on an H100, almost all kernel launches
(28 layers x (1 prefill + B-1 steps) x ~15 kernels). Here every shape is fixed at construction:
the batch is padded to `batch` rows, the KV cache is preallocated for 2B+1 positions, the
B-step loop is unrolled, and sampling happens on the device (top-p and the Gumbel-max trick
with noise drawn outside the graph). On CUDA the whole decode is replayed as one graph; on
CPU the same code runs eagerly, so CPU tests cover it. It reads the Hugging Face Qwen3 module's
own weights: nothing is copied or converted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

from codila_engine.models.ar import BlockDrafts, LocalAR
from codila_engine.sampling import entropy, top_p_filter


class StaticBlockDecoder:
    def __init__(
        self,
        ar: LocalAR,
        batch: int,
        block_size: int,
        *,
        temperature: float,
        top_p: float,
        allowed: torch.Tensor | None = None,
        use_graph: bool | None = None,
    ) -> None:
        model = ar.model
        cfg = model.config
        self.model, self.embedding = model, ar.embedding
        self.batch, self.block = batch, block_size
        self.temperature, self.top_p = temperature, top_p
        dev, dtype = self.embedding.device, self.embedding.dtype
        hidden, vocab = self.embedding.shape[1], self.embedding.shape[0]
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        cache_length = 2 * block_size + 1  # <think> e_1..e_B </think> y_1..y_{B-1}
        shape = (batch, cfg.num_key_value_heads, cache_length, self.head_dim)
        self.k = [torch.zeros(shape, device=dev, dtype=dtype) for _ in model.model.layers]
        self.v = [torch.zeros(shape, device=dev, dtype=dtype) for _ in model.model.layers]
        positions = torch.arange(cache_length, device=dev)[None]
        self.cos, self.sin = model.model.rotary_emb(torch.zeros(1, device=dev, dtype=dtype), positions)
        # static inputs and outputs
        self.inputs = torch.zeros(batch, block_size + 2, hidden, device=dev, dtype=dtype)
        self.forced = torch.full((batch, block_size), -1, dtype=torch.long, device=dev)
        self.noise = torch.zeros(block_size, batch, vocab, device=dev)
        self.allowed = allowed if allowed is not None else torch.ones(vocab, dtype=torch.bool, device=dev)
        self.ids = torch.zeros(batch, block_size, dtype=torch.long, device=dev)
        self.entropy = torch.zeros(batch, block_size, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None
        if use_graph if use_graph is not None else dev.type == "cuda":
            self._capture()

    # --- the model, functionally, on the static cache --------------------------------
    def _forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Hidden state of the last of the positions start..start+len(x)-1 (all cached)."""
        n = x.shape[1]
        cos, sin = self.cos[:, start : start + n], self.sin[:, start : start + n]
        for i, layer in enumerate(self.model.model.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            shape = (x.shape[0], n, -1, self.head_dim)
            q = attn.q_norm(attn.q_proj(h).view(shape)).transpose(1, 2)
            k = attn.k_norm(attn.k_proj(h).view(shape)).transpose(1, 2)
            v = attn.v_proj(h).view(shape).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            self.k[i][:, :, start : start + n] = k
            self.v[i][:, :, start : start + n] = v
            out = F.scaled_dot_product_attention(
                q,
                self.k[i][:, :, : start + n],
                self.v[i][:, :, : start + n],
                is_causal=n > 1,
                enable_gqa=True,
                scale=attn.scaling,
            )
            x = x + attn.o_proj(out.transpose(1, 2).reshape(x.shape[0], n, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.model.model.norm(x[:, -1])

    def _pick(self, logits: torch.Tensor, j: int) -> torch.Tensor:
        logits = logits.float().masked_fill(~self.allowed, float("-inf"))
        self.entropy[:, j] = entropy(logits)
        if self.temperature <= 0:
            tok = logits.argmax(-1)
        else:  # Gumbel-max over the top-p set: a draw from the tempered, filtered distribution
            tok = (top_p_filter(logits / self.temperature, self.top_p) + self.noise[j]).argmax(-1)
        tok = torch.where(self.forced[:, j] >= 0, self.forced[:, j], tok)
        self.ids[:, j] = tok
        return tok

    @torch.inference_mode()
    def _decode(self) -> None:
        h = self._forward(self.inputs, 0)
        for j in range(self.block):
            tok = self._pick(self.model.lm_head(h), j)
            if j + 1 < self.block:
                h = self._forward(self.embedding[tok][:, None], self.block + 2 + j)

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm up kernels and the allocator before capturing
                self._decode()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._decode()
        self.graph = graph

    # --- the BlockDecoder interface (models/ar.py), as LocalAR ----------------------
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
        """Same contract as LocalAR.decode_blocks for up to `batch` blocks of `block_size`."""
        c, b = forced.shape
        if b != self.block or c > self.batch or (temperature, top_p) != (self.temperature, self.top_p):
            raise ValueError(
                f"this decoder was built for <= {self.batch} blocks of {self.block} at "
                f"temperature {self.temperature}, top-p {self.top_p}"
            )
        if return_logits:
            raise ValueError("the static decoder does not keep logits; use LocalAR.decode_blocks")
        if allowed is not None and allowed is not self.allowed:
            self.allowed.copy_(allowed)
        self.inputs[:c].copy_(inputs)
        self.inputs[c:].copy_(inputs[:1].expand(self.batch - c, -1, -1))  # padding rows: ignored
        self.forced.fill_(-1)
        self.forced[:c].copy_(forced)
        if temperature > 0:
            u = torch.rand(self.noise.shape, generator=generator, device=self.noise.device)
            self.noise.copy_(-torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7))))
        if self.graph is not None:
            self.graph.replay()
        else:
            self._decode()
        return BlockDrafts(self.ids[:c].clone(), self.entropy[:c].clone())
