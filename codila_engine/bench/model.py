"""`codila bench model`: the real model on this machine, as a user meets it.

Optionally (`--prepare`) the default model's first-run preparation in a fresh cache, in a child
process, with its wall time and peak memory; then the load time of the prepared folder, and
decoding speed on two requests an editor makes: a 16-token single-line infill (time to the first
draft is what the user waits for) and a 64-token completion (tokens per second).
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REQUESTS = {  # name: (prefix, suffix, span tokens, single line)
    "single-line infill (16)": (
        "def mean(xs):\n    if not xs:\n        raise ValueError('empty')\n    return ",
        "\n\n\ndef median(xs):\n    return sorted(xs)[len(xs) // 2]\n",
        16,
        True,
    ),
    "completion (64)": ("import os\n\n\ndef list_python_files(folder):\n", "", 64, False),
}


def measure_prepare(cache_dir: Path) -> dict:
    """`codila models prepare` into an empty cache, in a child process: wall time and peak RSS."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "codila_engine.cli", "models", "prepare", "--cache-dir", str(cache_dir)], check=True
    )
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    return {"wall_s": round(wall, 1), "peak_rss_gib": round(peak_kib / 2**20, 2)}


def run_requests(engine, cfg, repeats: int) -> dict:
    rows = {}
    for name, (prefix, suffix, tokens, single_line) in REQUESTS.items():
        runs = []
        for _ in range(repeats):
            result = engine.decode(
                prefix, suffix, cfg.with_options(max_new_tokens=tokens, single_line=single_line)
            ).run()
            s = result.stats
            runs.append(
                {
                    "first_draft_s": s.first_commit_s,
                    "wall_s": s.wall_s,
                    "tokens": s.tokens,
                    "tokens_per_s": s.tokens / s.wall_s if s.wall_s else 0.0,
                    "text": result.text,
                }
            )
        rows[name] = {
            key: statistics.median(r[key] for r in runs)
            for key in ("first_draft_s", "wall_s", "tokens", "tokens_per_s")
        }
        rows[name]["text"] = runs[-1]["text"]
    return rows


def cmd_bench_model(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, object] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    with tempfile.TemporaryDirectory(prefix="codila-bench-cache-") as fresh:  # removed afterwards (1 GB)
        cache_dir = args.cache_dir
        if args.prepare:
            cache_dir = fresh
            prepared = measure_prepare(Path(cache_dir))
            report["prepare"] = prepared
            print(f"first-run preparation: {prepared['wall_s']} s, peak RSS {prepared['peak_rss_gib']} GiB")
        report.update(measure_decoding(args, cache_dir))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def measure_decoding(args, cache_dir: str | None) -> dict:
    """Load time and request speeds for each dtype asked for."""
    import torch

    from codila_engine.models.checkpoint import default_device, default_dtype
    from codila_engine.prepare.folders import model_folders
    from codila_engine.config import DecodeConfig
    from codila_engine.engine import Engine

    report = {}
    models = model_folders(args.dlm, args.ar, args.decoder, cache_dir=cache_dir)
    device = torch.device(args.device) if args.device else default_device()
    for dtype_name in args.dtypes:
        dtype = default_dtype(device, dtype_name)
        t0 = time.perf_counter()
        engine = Engine.load(models.dlm, models.ar, device=device, dtype=dtype)
        load_s = time.perf_counter() - t0
        cfg = engine.resolve(DecodeConfig(decoder=args.decoder, temperature=0, top_p=1.0))
        engine.decode("x = ", "", cfg.with_options(max_new_tokens=2)).run()  # warm-up
        rows = run_requests(engine, cfg, args.repeats)
        key = str(dtype).removeprefix("torch.")
        report[key] = {"model": models.name, "decoder": cfg.decoder, "load_s": round(load_s, 2), "requests": rows}
        print(f"{models.name}, {cfg.decoder} decoder, {key} on {device}: loaded in {load_s:.2f} s")
        for name, r in rows.items():
            print(
                f"  {name:26s} first draft {r['first_draft_s']:.3f} s  {r['tokens']:.0f} tokens in {r['wall_s']:.2f} s "
                f"({r['tokens_per_s']:.1f} tok/s)"
            )
        del engine
    return report


def add_bench_model_subcommand(subparsers) -> None:
    p = subparsers.add_parser(
        "model",
        help="the real model: first-run preparation, load time, decoding speed "
        "(default: the default model with the fim decoder)",
    )
    p.add_argument("--dlm", help="DLM folder (default: none, as for every command)")
    p.add_argument("--ar", help="AR folder (default: the shipped pair's, else the default model)")
    p.add_argument("--decoder", default="auto", help="as for `codila generate` (default: %(default)s)")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["auto"],
        metavar="DTYPE",
        help="measure each: auto, float32, bfloat16, float16 (default: auto)",
    )
    p.add_argument("--prepare", action="store_true", help="also measure the first-run preparation, in a new cache")
    p.add_argument("--cache-dir", help="where the default model is prepared (default: the usual cache)")
    p.add_argument("--repeats", type=int, default=3, help="runs per request; medians are reported (default: 3)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", help="also write the report to this JSON file (default: print only)")
    p.set_defaults(func=cmd_bench_model)
