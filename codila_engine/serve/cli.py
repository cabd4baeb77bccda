"""`codila serve`: the engine as a team server on Ray Serve; `codila serve-bench`: its numbers."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from codila_engine.config import DECODERS
from codila_engine.options import UsageError, add_model_args

MIB = 2**20


def add_serve_subcommands(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the engine to a team over HTTP (Ray Serve; a token is required)",
        description="Run the engine as a Ray Serve application: one deployment holds the models in each of "
        "--replicas replicas; editors connect with codila-lsp's engine URL setting. Listens on 127.0.0.1 "
        "unless --host says otherwise; every request needs a token (--token-file, or $CODILA_TOKEN); "
        "put TLS in a reverse proxy in front (see README, Team server).",
    )
    add_model_args(p)
    p.add_argument(
        "--decoder",
        choices=DECODERS,
        default="auto",
        help="with no --dlm/--ar, which default models to load: codila loads the default DLM and AR, dlm and "
        "dream the DLM, auto and fim the AR (default: %(default)s); each request still names its decoder",
    )
    net = p.add_argument_group("network and security")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    net.add_argument("--port", type=int, default=8000, help="TCP port to listen on, unitless (default: %(default)s)")
    net.add_argument(
        "--token-file",
        help="file of accepted tokens, one per line, optionally `NAME TOKEN` (a named client gets its own limits) "
        "(default: the one token in $CODILA_TOKEN)",
    )
    net.add_argument(
        "--max-client-requests",
        type=int,
        default=4,
        help="requests in flight per client; more get 429 (default: %(default)s)",
    )
    net.add_argument(
        "--max-requests",
        type=int,
        default=256,
        help="requests in flight per server, all clients together (default: %(default)s)",
    )
    net.add_argument(
        "--max-request-mib",
        type=float,
        default=4.0,
        help="the largest request body, in MiB (2^20 bytes) (default: %(default)s)",
    )
    net.add_argument(
        "--max-auth-failures",
        type=int,
        default=10,
        help="failed authentications (a missing or wrong token) from one address within --auth-failure-window-s; "
        "then that address gets 429, its tokens unchecked, for that long; 0: no limit (default: %(default)s)",
    )
    net.add_argument(
        "--auth-failure-window-s",
        type=float,
        default=60.0,
        help="the window of --max-auth-failures and how long an address stays locked out, in seconds "
        "(default: %(default)s)",
    )
    rep = p.add_argument_group("replicas")
    rep.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="engine replicas, one process per replica, each with the models (default: 1)",
    )
    rep.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica, e.g. 1 (default: 0: CPU replicas)")
    rep.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica (default: %(default)s)")
    rep.add_argument(
        "--max-decodes",
        type=int,
        default=16,
        help="decodes running at once on one replica; more wait (default: %(default)s)",
    )
    rep.add_argument(
        "--no-batching",
        action="store_true",
        help="each decode runs its own DLM forwards and AR block decodes (default: concurrent decodes on a "
        "replica share them)",
    )
    rep.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="how long a DLM forward or AR block decode waits for the other decodes', in milliseconds "
        "(default: %(default)s)",
    )
    rep.add_argument(
        "--max-batch", type=int, default=32, help="decodes per batched DLM forward or AR call (default: %(default)s)"
    )
    rep.add_argument(
        "--no-retry",
        action="store_true",
        help="a decode whose replica dies fails (default: it runs again once on another replica)",
    )
    rep.add_argument(
        "--ray-address",
        help="join this Ray cluster (default: start a local Ray instance, dashboard off, on 127.0.0.1 when --host is)",
    )
    p.set_defaults(func=cmd_serve)

    b = sub.add_parser(
        "serve-bench",
        help="first-draft latency and throughput of the team server under concurrent clients",
        description="Start the team server on local Ray for each configuration (replicas x batching), drive it "
        "with 1, 4, 16, 32 concurrent clients and print one row per run (also as JSON with --json).",
    )
    add_model_args(b)
    b.add_argument("--decoder", choices=DECODERS, default="auto", help="as for serve (default: %(default)s)")
    b.add_argument("--clients", default="1,4,16,32", help="concurrency levels (default: %(default)s)")
    b.add_argument("--replicas", default="1,2", help="replica counts to run (default: %(default)s)")
    b.add_argument("--batching", default="on,off", help="batching settings to run (default: %(default)s)")
    b.add_argument("--requests", type=int, default=64, help="decodes per run, at least 2 per client (default: 64)")
    b.add_argument("--max-new-tokens", type=int, default=32, help="span per decode (default: %(default)s tokens)")
    b.add_argument("--block-size", type=int, default=4, help="tokens per block (default: %(default)s tokens)")
    b.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica (default: %(default)s)")
    b.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (default: %(default)s)")
    b.add_argument(
        "--port", type=int, default=8765, help="TCP port of the server it starts, unitless (default: %(default)s)"
    )
    b.add_argument("--json", help="also write the rows to this JSON file")
    b.set_defaults(func=cmd_serve_bench)


def _models(args: argparse.Namespace):
    from codila_engine.prepare.folders import model_folders

    return model_folders(args.dlm, args.ar, args.decoder, cache_dir=args.cache_dir)


def engine_spec(args: argparse.Namespace, models, batching: bool = True, max_decodes: int = 16):
    from codila_engine.serve.replica import EngineSpec

    return EngineSpec(
        dlm=str(models.dlm) if models.dlm else None,
        ar=str(models.ar) if models.ar else None,
        name=models.name,
        device=args.device or ("cuda" if args.num_gpus > 0 else "cpu"),
        dtype=args.dtype,
        think_ids=tuple(args.think_ids) if args.think_ids else None,
        batching=batching,
        max_batch=getattr(args, "max_batch", 32),
        batch_wait_s=getattr(args, "batch_wait_ms", 5.0) / 1000,
        max_decodes=max_decodes,
        torch_threads=max(1, int(args.num_cpus)) if args.num_gpus == 0 else None,
    )


def _check(args: argparse.Namespace) -> None:
    for name, ok in (
        ("--replicas", args.replicas >= 1),
        ("--max-decodes", args.max_decodes >= 1),
        ("--max-client-requests", args.max_client_requests >= 1),
        ("--max-requests", args.max_requests >= 1),
        ("--max-request-mib", 0 < args.max_request_mib <= 1024),
        ("--max-auth-failures", args.max_auth_failures >= 0),
        ("--auth-failure-window-s", 0 < args.auth_failure_window_s <= 86400),
        ("--num-cpus", args.num_cpus > 0),
        ("--num-gpus", args.num_gpus >= 0),
        ("--port", 0 < args.port < 65536),
        ("--max-batch", args.max_batch >= 1),
        ("--batch-wait-ms", 0 <= args.batch_wait_ms <= 1000),
    ):
        if not ok:
            raise UsageError(f"{name}: out of range")


def cmd_serve(args: argparse.Namespace) -> int:
    from codila_engine.serve.auth import TokenError, Tokens

    _check(args)
    try:
        tokens = Tokens.load(args.token_file)
    except TokenError as exc:
        raise UsageError(str(exc)) from None
    try:
        from codila_engine.serve import app
    except ImportError as exc:
        raise UsageError(f"codila serve needs Ray Serve: pip install 'codila[serve]' ({exc})") from None
    from codila_engine.serve.gateway import Limits

    models = _models(args)
    options = app.ServeOptions(
        engine=engine_spec(args, models, not args.no_batching, args.max_decodes),
        limits=Limits(
            max_client_requests=args.max_client_requests,
            max_requests=args.max_requests,
            max_request_bytes=int(args.max_request_mib * MIB),
            retry=not args.no_retry,
            max_auth_failures=args.max_auth_failures,
            auth_failure_window_s=args.auth_failure_window_s,
        ),
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        ray_address=args.ray_address,
    )
    if not app.loopback(args.host):
        print(
            f"codila serve: listening on {args.host}, beyond this machine: plain HTTP, so put a TLS reverse proxy in "
            "front (README, Team server)",
            file=sys.stderr,
        )
    stopping = threading.Event()
    print(f"codila serve: starting Ray and {args.replicas} replica(s) of {models.name} ...", file=sys.stderr)
    url = app.serve_app(options, tokens)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    batching = "off" if args.no_batching else "on"
    print(
        f"codila serve: ready at {url} ({args.replicas} replica(s), batching {batching})", file=sys.stderr, flush=True
    )
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        print("codila serve: stopping (in-flight decodes get a grace period)", file=sys.stderr, flush=True)
        app.stop()
        print("codila serve: stopped", file=sys.stderr, flush=True)
    return 0


def cmd_serve_bench(args: argparse.Namespace) -> int:
    from codila_engine.serve import bench

    return bench.main(args)
