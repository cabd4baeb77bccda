"""`codila eval humaneval-infilling ...`: evaluate through the language server, as editors use it;
`codila eval table ...` (table.py): the README's comparison of decoders. Both keep every
finished task, so `--resume` goes on where a stopped run ended.

Call add_eval_subcommands(subparsers) from the main CLI; the subcommand sets `func`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

from codila_engine.options import add_decode_args, add_model_args
from codila_engine.config import DecodeConfig
from codila_engine.eval import execution
from codila_engine.eval.humaneval import SPLITS
from codila_engine.eval.report import cmd_render
from codila_engine.eval.setups import BLOCK_SIZES, DEFAULT_FAMILIES, FAMILIES, THRESHOLDS
from codila_engine.eval.table import build_table


def server_options(args: argparse.Namespace) -> dict:
    """initializationOptions from the model and decoding flags (unset model flags are left out).

    A decoding flag the server has no setting for is an error when set, not silently dropped."""
    from lsp_server.settings import DECODE_KEYS, MODEL_KEYS

    default, sent = DecodeConfig(), set(DECODE_KEYS.values()) | {"max_new_tokens"}  # that one is maxTokens
    unsent = [
        f"--{f.name.replace('_', '-')}"
        for f in fields(DecodeConfig)
        if f.name not in sent and hasattr(args, f.name) and getattr(args, f.name) != getattr(default, f.name)
    ]
    if args.think_ids:
        unsent.append("--think-ids")
    if unsent:
        raise ValueError(f"{', '.join(unsent)}: not a codila-lsp setting, so the eval cannot pass it to the server")
    options = {key: getattr(args, name) for key, name in DECODE_KEYS.items() if getattr(args, name, None) is not None}
    options.update(
        {key: getattr(args, name) for key, name in MODEL_KEYS.items() if getattr(args, name, None) is not None}
    )
    return options


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _spread(s: dict) -> str:
    return f"mean {_num(s['mean'])}  p50 {_num(s['p50'])}  p95 {_num(s['p95'])}"


def format_summary(summary: dict) -> str:
    """A short table of the metrics, for the terminal."""
    m, n = summary["metrics"], summary["n"]
    passed = round((m["pass_at_1"] or 0) * n)
    valid = round((m["syntax_valid_rate"] or 0) * n)
    rows = [
        ("pass@1", f"{_num(m['pass_at_1'])}  ({passed}/{n})"),
        ("syntax-valid", f"{_num(m['syntax_valid_rate'])}  ({valid}/{n})"),
        ("latency (s)", _spread(m["latency_s"])),
        ("first block, server (s)", _spread(m["first_block_s"])),
        ("first draft, client (s)", _spread(m["first_draft_s"])),
        ("tokens/s", f"{_num(m['tokens_per_s'], 1)} overall, {_num(m['tokens_per_s_mean'], 1)} mean per task"),
        ("iterations per token", _num(m["iterations_per_token"])),
        ("request errors", str(m["request_errors"]) + (f"  (first: {m['first_error']})" if m["first_error"] else "")),
    ]
    width = max(len(name) for name, _ in rows)
    by = "; ".join(m.get("produced_by") or ["no answers"])
    head = (
        f"HumanEval-Infilling {summary['split']}: {n} tasks on {summary['device']} in {summary['eval_s']:.1f}s ({by})"
    )
    return "\n".join([head] + [f"  {name:<{width}}  {value}" for name, value in rows])


UNSAFE_EXEC_HELP = (
    "where no sandbox is available (bubblewrap missing or namespaces refused), run generated "
    "programs as plain processes of your user, which can read and write your files and reach the "
    "network (default: refuse to run them)"
)


def exec_guarded(command):
    """Wrap a benchmark command: where its generated programs cannot be sandboxed, refuse in one line
    (exit 2) unless --unsafe-exec is given, and then warn and let them run unisolated."""

    def guarded(args: argparse.Namespace) -> int:
        problem = execution.sandbox_problem() if getattr(args, "humaneval_limit", 1) else None  # table: 0 runs none
        if problem is not None and not args.unsafe_exec:
            print(f"codila eval: {execution.refusal(problem)}", file=sys.stderr)
            return 2
        if problem is not None:
            print(
                f"codila eval: warning: --unsafe-exec: {problem}; generated programs run unisolated as your user",
                file=sys.stderr,
            )
            execution.allow_unsafe_exec()
        return command(args)

    return guarded


def cmd_humaneval_infilling(args: argparse.Namespace) -> int:
    from codila_engine.eval.client import ServerError  # the client stack loads only when used
    from codila_engine.eval.run import evaluate

    if args.resume and not args.out:
        raise ValueError("--resume goes on with the run in --out: give --out FOLDER (the stopped run's folder)")
    out = args.out or Path("runs/eval") / f"humaneval-{args.split}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        summary = evaluate(
            args.split,
            out_dir=out,
            limit=args.limit,
            seed=args.sample_seed,
            options=server_options(args),
            max_tokens=args.max_tokens,
            server_cmd=args.server_cmd,
            timeout_s=args.timeout,
            request_timeout_s=args.request_timeout,
            progress=args.progress,
            resume=args.resume,
        )
    except ServerError as exc:
        print(f"codila eval: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    print(f"wrote {summary['files']['tasks']} and {summary['files']['summary']}")
    return 0


# --- codila eval table ---------------------------------------------------------------
def fim_folder(models, given: str | None, decoder_folders_given: bool) -> str | None:
    """The AR of the FIM row: --fim-ar if given; for the default pair its base model (the CoDiLA
    AR is finetuned away from FIM); else the AR given (used only if it has FIM tokens)."""
    if given:
        return given
    if decoder_folders_given:
        return models.ar
    from codila_engine.prepare.default_model import default_model_folder

    return str(default_model_folder())


def cmd_table(args) -> int:
    import shlex

    import torch

    from codila_engine.eval.client import ServerError
    from codila_engine.prepare.folders import model_folders

    models = model_folders(args.dlm, args.ar, None if args.dlm or args.ar else "codila")
    fim_ar = fim_folder(models, args.fim_ar, bool(args.dlm or args.ar))
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the language servers started for HumanEval
    out = args.out or Path("runs/eval") / f"table-{time.strftime('%Y%m%d-%H%M%S')}"
    base = DecodeConfig(temperature=args.temperature, seed=args.seed)
    try:
        table = build_table(
            models,
            out_dir=out,
            fim_ar=fim_ar,
            data_dirs=args.data_dir or (),
            held_out_dirs=args.held_out_dir or (),
            held_out_tasks=args.held_out_tasks,
            held_out_fraction=args.held_out_fraction,
            humaneval_limit=args.humaneval_limit,
            humaneval_max_tokens=args.humaneval_max_tokens,
            humaneval_multi_limit=args.humaneval_multi_limit,
            humaneval_multi_max_tokens=args.humaneval_multi_max_tokens,
            block_sizes=args.block_sizes,
            thresholds=args.thresholds,
            families=args.configs,
            base=base,
            device=args.device,
            command=shlex.join(["codila"] + sys.argv[1:]),
            resume=args.resume,
            stored_only=args.stored_only,
            progress=args.progress,
        )
    except ServerError as exc:
        print(f"codila eval table: {exc}", file=sys.stderr)
        return 1
    print("\n".join(c["text"] for c in table["claims"]))
    print(f"wrote {out / 'results.json'}, {out / 'table.md'} and {out / 'pareto.png'}")
    return 0


def add_table_subcommand(benchmarks) -> None:
    r = benchmarks.add_parser(
        "render", help="regenerate table.md, the Pareto plot and the README block from a results.json"
    )
    r.add_argument("results", help="a results.json written by `codila eval table`")
    r.add_argument("--readme", help="also replace the results block of this README (between its two marker lines)")
    r.set_defaults(func=cmd_render)
    p = benchmarks.add_parser(
        "table",
        help="issue 11's table: FIM, DLM baselines and CoDiLA variants on held-out files and HumanEval-Infilling",
    )
    p.add_argument(
        "--dlm",
        help="Dream-format DLM folder (default: the default model's DLM and CoDiLA AR, prepared on first use)",
    )
    p.add_argument("--ar", help="Qwen3 or Qwen2 AR folder (default: the default model's CoDiLA AR)")
    p.add_argument(
        "--fim-ar",
        help="AR folder of the FIM row (default: the default model's base for the default pair, else --ar)",
    )
    p.add_argument("--device", default="cpu", help="where to decode (default cpu: the table reports CPU speed)")
    p.add_argument(
        "--held-out-dir",
        action="append",
        help="folder of held-out files, e.g. a package kept out of training (repeatable)",
    )
    p.add_argument(
        "--data-dir",
        action="append",
        help="training data folder (repeatable; held-out files come from its held-out split)",
    )
    p.add_argument(
        "--held-out-fraction",
        type=float,
        default=0.02,
        help="with --data-dir: fraction of documents held out, 0-1, as given to `codila train`",
    )
    p.add_argument(
        "--held-out-tasks", type=int, default=100, help="held-out file tasks per kind (single-line, multi-line)"
    )
    p.add_argument(
        "--humaneval-limit",
        type=int,
        default=164,
        help="N single-line tasks spread over all problems, the same for every row (0: skip)",
    )
    p.add_argument("--humaneval-max-tokens", type=int, default=24, help="single-line span, in masked tokens")
    p.add_argument(
        "--humaneval-multi-limit",
        type=int,
        default=50,
        help="N multi-line tasks spread over all problems, the same for every row (0: skip)",
    )
    p.add_argument("--humaneval-multi-max-tokens", type=int, default=64, help="multi-line span, in masked tokens")
    p.add_argument(
        "--block-sizes",
        type=int,
        nargs="+",
        default=list(BLOCK_SIZES),
        metavar="B",
        help="CoDiLA block sizes, in tokens (comparisons at 4 if listed, else the first)",
    )
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=list(THRESHOLDS),
        metavar="TAU",
        help="dynamic-mode thresholds (mean entropy in nats)",
    )
    p.add_argument(
        "--configs",
        nargs="+",
        choices=FAMILIES,
        default=list(DEFAULT_FAMILIES),
        metavar="FAMILY",
        help=f"configuration families to run, of {', '.join(FAMILIES)} (default: all but dream)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=DecodeConfig().temperature,
        help="sampling temperature of every row, unitless, 0 = greedy",
    )
    p.add_argument("--seed", type=int, default=DecodeConfig().seed, help="sampling seed of every row")
    p.add_argument("--threads", type=int, help="CPU threads for torch and the servers (default: torch's choice)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/eval/table-TIME)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse rows already in --out that were measured with the same settings, and the finished tasks "
        "of a row that was stopped; measure the rest",
    )
    p.add_argument(
        "--stored-only",
        action="store_true",
        help="measure nothing: make the table of the rows already in --out (as --resume finds them) and list "
        "the rest as not measured",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=cmd_table)


def add_eval_subcommands(subparsers) -> None:
    ev = subparsers.add_parser("eval", help="benchmarks through the language server")
    benchmarks = ev.add_subparsers(dest="benchmark", required=True)
    # "resolve": --max-tokens takes over add_decode_args' --max-new-tokens (same meaning, per infill)
    p = benchmarks.add_parser(
        "humaneval-infilling",
        conflict_handler="resolve",
        help="HumanEval-Infilling pass@1, syntax validity and speed via codila-lsp",
    )
    p.add_argument("--split", choices=sorted(SPLITS), default="single-line", help="which HumanEval-Infilling split")
    p.add_argument("--limit", type=int, help="N tasks spread over all problems, seeded (default: the whole split)")
    p.add_argument("--sample-seed", type=int, default=0, help="which tasks --limit picks (default: %(default)s)")
    p.add_argument(
        "--server-cmd",
        help="command that starts the server over stdio "
        "(default: this Python running `-m lsp_server`, i.e. codila-lsp)",
    )
    p.add_argument(
        "--out", type=Path, help="folder for tasks.jsonl and summary.json (default: runs/eval/humaneval-SPLIT-TIME)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on with a stopped run in --out: keep its finished tasks if made with the same settings",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="time each program may run its tests, in seconds")
    p.add_argument("--request-timeout", type=float, default=300.0, help="time to wait for one infill, in seconds")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_model_args(p)
    add_decode_args(p)
    p.add_argument(
        "--max-tokens",
        "--max-new-tokens",
        dest="max_tokens",
        type=int,
        help="maxTokens per infill, the span length (default: the server's infillTokens)",
    )
    p.set_defaults(func=exec_guarded(cmd_humaneval_infilling))
    add_table_subcommand(benchmarks)
    table = benchmarks.choices["table"]
    table.set_defaults(func=exec_guarded(table.get_default("func")))
    for runs_code in (p, table):
        runs_code.add_argument("--unsafe-exec", action="store_true", help=UNSAFE_EXEC_HELP)
