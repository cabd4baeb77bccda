"""`codila serve-bench`: the team server under concurrent clients, on this machine.

For each configuration (replicas x batching) the application runs on a local Ray; for each
concurrency level, that many client threads send decodes through RemoteEngine until `requests`
decodes are done. Per decode the client times the first draft (request sent -> first event) and
the end; the replica's own stats say where its time went. One row per (configuration, clients):

- first-draft latency p50/p95 (client side), and the replica's own time to its first commit: the
  difference is HTTP, the gateway, Ray's routing and queueing behind other decodes;
- throughput: decodes/s and text tokens/s over the run;
- DLM and AR ms per decode (replica side) and the shares of DLM forwards and of AR block decodes
  that ran batched with another decode's.
A first row measures the same decode in-process (no server) for reference.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import statistics
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

PROMPTS = [
    "def add(a, b):\n",
    "for i in range(10):\n    print(i)\n" * 3,
    "class Point:\n    def __init__(self, x, y):\n",
    "import os\nprint(os.path.join('a', 'b'))\n" * 5,
]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def _levels(text: str, cast=int) -> list:
    return [cast(x) for x in text.split(",") if x.strip()]


def run_level(url: str, token: str, cfg, clients: int, requests: int) -> dict:
    from codila_engine.serve.client import RemoteEngine

    engines = [RemoteEngine(url, token) for _ in range(clients)]
    lock = threading.Lock()
    todo = list(range(requests))
    rows: list[dict] = []
    errors: list[str] = []

    def client(engine: RemoteEngine) -> None:
        while True:
            with lock:
                if not todo:
                    return
                n = todo.pop()
            t0 = time.perf_counter()
            try:
                decoding = engine.decode(PROMPTS[n % len(PROMPTS)], "", cfg)
                first = None
                for _ in decoding:
                    if first is None:
                        first = time.perf_counter() - t0
                total = time.perf_counter() - t0
                r = decoding.result
                with lock:
                    rows.append({"id": decoding.id, "first": first, "total": total, "result": r})
            except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(e,)) for e in engines]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    shared = shared_ar = iterations = 0
    for row in rows:
        try:
            record = engines[0].record(row["id"])
            shared += record.get("shared_forwards") or 0
            shared_ar += record.get("shared_ar_calls") or 0
            iterations += record.get("iterations") or 0
        except Exception:  # noqa: BLE001 - records are best effort
            pass
    firsts = [r["first"] for r in rows if r["first"] is not None]
    server_first = [r["result"].stats.first_commit_s for r in rows if r["result"].stats.first_commit_s is not None]
    return {
        "clients": clients,
        "requests": len(rows),
        "errors": len(errors),
        "first_draft_p50_ms": round(1000 * _pct(firsts, 0.5), 1),
        "first_draft_p95_ms": round(1000 * _pct(firsts, 0.95), 1),
        "replica_first_commit_p50_ms": round(1000 * _pct(server_first, 0.5), 1),
        "decodes_per_s": round(len(rows) / wall, 2),
        "tokens_per_s": round(sum(r["result"].stats.text_tokens for r in rows) / wall, 1),
        "decode_p50_ms": round(1000 * _pct([r["total"] for r in rows], 0.5), 1),
        "replica_wall_ms": round(1000 * statistics.fmean(r["result"].stats.wall_s for r in rows), 1) if rows else 0,
        "dlm_ms": round(1000 * statistics.fmean(r["result"].stats.dlm_s for r in rows), 1) if rows else 0,
        "ar_ms": round(1000 * statistics.fmean(r["result"].stats.ar_s for r in rows), 1) if rows else 0,
        "batched_share": round(shared / iterations, 2) if iterations else 0.0,
        "ar_batched_share": round(shared_ar / iterations, 2) if iterations else 0.0,
        "wall_s": round(wall, 2),
        "first_errors": errors[:3],
    }


def in_process(spec, cfg, requests: int) -> dict:
    """The same decodes on an Engine in this process, one at a time: the floor without a server."""
    import torch

    from codila_engine.decoding.events import Result
    from codila_engine.engine import Engine

    threads = torch.get_num_threads()
    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    try:
        engine = Engine.load(spec.dlm, spec.ar, device=spec.device, dtype=spec.dtype)
        firsts: list[float] = []
        totals: list[float] = []
        results: list[Result] = []
        t0 = time.perf_counter()
        for n in range(requests):
            start = time.perf_counter()
            decoding = engine.decode(PROMPTS[n % len(PROMPTS)], "", cfg)
            first = None
            for _ in decoding:
                if first is None:
                    first = time.perf_counter() - start
            totals.append(time.perf_counter() - start)
            firsts.append(totals[-1] if first is None else first)
            assert decoding.result is not None
            results.append(decoding.result)
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return {
        "clients": 1,
        "requests": requests,
        "errors": 0,
        "first_draft_p50_ms": round(1000 * _pct(firsts, 0.5), 1),
        "first_draft_p95_ms": round(1000 * _pct(firsts, 0.95), 1),
        "replica_first_commit_p50_ms": round(
            1000 * _pct([r.stats.first_commit_s for r in results if r.stats.first_commit_s is not None], 0.5), 1
        ),
        "decodes_per_s": round(requests / wall, 2),
        "tokens_per_s": round(sum(r.stats.text_tokens for r in results) / wall, 1),
        "decode_p50_ms": round(1000 * _pct(totals, 0.5), 1),
        "replica_wall_ms": round(1000 * statistics.fmean(r.stats.wall_s for r in results), 1),
        "dlm_ms": round(1000 * statistics.fmean(r.stats.dlm_s for r in results), 1),
        "ar_ms": round(1000 * statistics.fmean(r.stats.ar_s for r in results), 1),
        "batched_share": 0.0,
        "ar_batched_share": 0.0,
        "wall_s": round(wall, 2),
        "first_errors": [],
    }


COLUMNS = (
    ("setup", 22),
    ("clients", 7),
    ("first_draft_p50_ms", 9),
    ("first_draft_p95_ms", 9),
    ("replica_first_commit_p50_ms", 9),
    ("decodes_per_s", 8),
    ("tokens_per_s", 8),
    ("dlm_ms", 7),
    ("ar_ms", 7),
    ("batched_share", 7),
    ("ar_batched_share", 7),
    ("errors", 6),
)
HEADERS = (
    "setup",
    "clients",
    "1st p50",
    "1st p95",
    "rep 1st",
    "dec/s",
    "tok/s",
    "DLM ms",
    "AR ms",
    "batched",
    "AR bat",
    "errors",
)


def _print_row(row: dict) -> None:
    print("  ".join(str(row.get(k, "")).rjust(w) for k, w in COLUMNS), flush=True)


def main(args) -> int:
    from codila_engine.config import DecodeConfig
    from codila_engine.serve import app
    from codila_engine.serve.auth import Tokens
    from codila_engine.serve.cli import _models, engine_spec
    from codila_engine.serve.gateway import Limits

    clients, replicas = _levels(args.clients), _levels(args.replicas)
    batching = [b.strip() == "on" for b in args.batching.split(",") if b.strip()]
    cfg = DecodeConfig(max_new_tokens=args.max_new_tokens, block_size=args.block_size)
    models = _models(args)
    token = secrets.token_hex(16)
    os.environ["CODILA_BENCH_TOKEN"] = token
    tokens = Tokens.load(env="CODILA_BENCH_TOKEN")
    meta = {
        "model": models.name,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or platform.platform()})",
        "load_average_before": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "codila " + " ".join(sys.argv[1:]),
        "decode": asdict(cfg),
    }
    print(json.dumps(meta), flush=True)
    print("  ".join(h.rjust(w) for h, (_, w) in zip(HEADERS, COLUMNS)), flush=True)
    rows = []
    spec = engine_spec(args, models, True, 64)
    row = {"setup": "in-process", **in_process(spec, cfg, min(args.requests, 32))}
    rows.append(row)
    _print_row(row)
    started = False
    try:
        for n_replicas in replicas:
            for batch in batching:
                spec = engine_spec(args, models, batch, 64)
                options = app.ServeOptions(
                    engine=spec,
                    limits=Limits(max_client_requests=1024, max_requests=1024),
                    port=args.port,
                    replicas=n_replicas,
                    num_cpus=args.num_cpus,
                    num_gpus=args.num_gpus,
                    log_to_driver=False,
                )
                if started:
                    app.serve.delete(app.APP)
                url = app.serve_app(options, tokens)
                started = True
                run_level(url, token, cfg, 2, min(8, max(2, args.requests)))  # warm up: first calls, threads, caches
                for level in clients:
                    requests = max(args.requests, 2 * level)
                    setup = f"{n_replicas} replica{'s' if n_replicas > 1 else ''}, batching {'on' if batch else 'off'}"
                    row = {"setup": setup, "replicas": n_replicas, "batching": batch}
                    row |= run_level(url, token, cfg, level, requests)
                    rows.append(row)
                    _print_row(row)
    finally:
        if started:
            app.stop()
    meta["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0
