"""`codila eval table`: the README's measured comparison of decoders, in one command.

Benchmarks: single-line and multi-line infilling of held-out Python files (decoded directly on
the engine) and HumanEval-Infilling single-line (through the language server, like an editor).
Configurations: DLM K=1 once; per block size B: DLM K=B, CoDiLA static with soft and with top-1
conditioning, CoDiLA dynamic at each threshold. All share one sampling setup (DecodeConfig's
temperature 0.1, top-p 0.8, seed 0 unless --temperature/--seed), so they differ only in the decoder.

A held-out task gets ceil(1.25 x the truth's token count) masks (the engine rounds up to whole
blocks); a HumanEval task a fixed `--humaneval-max-tokens`. Iterations per token are total
iterations / total tokens of the final texts (EOS dropped in infilling does not count);
tokens/s are those text tokens / total decode wall time.

Claims, per benchmark and B, judged by pass@1 on HumanEval and exact match on held-out files:
"beats" holds when strictly higher (syntax-valid is shown beside it); "dynamic comes close to
K=1 with >= 2x fewer iterations" holds when the best dynamic threshold among those with at
least 2x fewer iterations per token than K=1 is at most CLOSE below K=1, and is untestable
(`holds` None) when K=1 itself scores 0.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from codila_engine.config import DecodeConfig
from codila_engine.eval.heldout import KINDS, HeldOutTask, build_tasks, exact_match, syntax_valid

FAMILIES = ("fim", "dream", "dlm-k1", "dlm-kb", "static-soft", "static-top1", "dynamic")
NEEDS = {"fim": ("ar",), "dream": ("dlm",), "dlm-k1": ("dlm",), "dlm-kb": ("dlm",)}  # the rest need both models
BLOCK_SIZES, THRESHOLDS = (2, 4, 8), (0.1, 0.3, 0.6)
HUMANEVAL = "humaneval single-line"
BENCHMARKS = tuple(f"held-out {kind}" for kind in KINDS) + (HUMANEVAL,)
CLOSE = 0.02  # "comes close": at most this far (absolute) below DLM K=1
LABELS = {"exact_match": "exact match", "pass_at_1": "pass@1", "syntax_valid": "syntax-valid"}
MARKERS = {
    "fim": "P",
    "dream": "X",
    "dlm-k1": "*",
    "dlm-kb": "s",
    "static-soft": "o",
    "static-top1": "v",
    "dynamic": "D",
}


@dataclass(frozen=True)
class Setup:
    name: str  # row label, unique
    family: str
    block_size: int
    cfg: DecodeConfig


def setups(
    block_sizes: Sequence[int] = BLOCK_SIZES,
    thresholds: Sequence[float] = THRESHOLDS,
    families: Sequence[str] = FAMILIES,
    base: DecodeConfig = DecodeConfig(),
) -> list[Setup]:
    """The table's configurations, in row order."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown configuration famil(ies) {unknown}; choose from {list(FAMILIES)}")
    rows = [
        Setup("FIM (AR left to right)", "fim", 1, base.with_options(decoder="fim", block_size=1)),
        Setup("Dream sampler (a step per token)", "dream", 1, base.with_options(decoder="dream", block_size=1)),
        Setup("DLM K=1", "dlm-k1", 1, base.with_options(decoder="dlm", block_size=1, tokens_per_step=1)),
    ]
    for b in block_sizes:
        codila = base.with_options(decoder="codila", block_size=b, mode="static")
        rows += [
            Setup(f"DLM K={b}", "dlm-kb", b, base.with_options(decoder="dlm", block_size=b, tokens_per_step=b)),
            Setup(f"CoDiLA B={b} static soft", "static-soft", b, codila.with_options(conditioning="soft")),
            Setup(f"CoDiLA B={b} static top-1", "static-top1", b, codila.with_options(conditioning="top1")),
        ]
        rows += [
            Setup(f"CoDiLA B={b} dynamic τ={t:g}", "dynamic", b, codila.with_options(mode="dynamic", threshold=t))
            for t in thresholds
        ]
    return [s for s in rows if s.family in families]


def summarize(rows: Sequence[dict]) -> dict:
    """Quality over all tasks; speed as totals (text tokens / iterations and / seconds)."""
    n, tokens = len(rows), sum(r["text_tokens"] for r in rows)
    wall, iterations = sum(r["wall_s"] for r in rows), sum(r["iterations"] for r in rows)

    def rate(key: str) -> float | None:
        return sum(r[key] for r in rows) / n if n and key in rows[0] else None

    return {
        "n": n,
        "syntax_valid": rate("syntax_valid"),
        "exact_match": rate("exact_match"),
        "pass_at_1": rate("passed"),
        "iterations_per_token": iterations / tokens if tokens else None,
        "tokens_per_s": tokens / wall if wall else None,
        "text_tokens": tokens,
        "wall_s": round(wall, 3),
    }


def heldout_row(engine, setup: Setup, task: HeldOutTask) -> dict:
    masks = -(-len(engine.encode(task.middle)) * 5 // 4)
    result = engine.decode(task.prefix, task.suffix, setup.cfg.with_options(max_new_tokens=masks)).run()
    s = result.stats
    return {
        "config": setup.name,
        "task_id": task.task_id,
        "kind": task.kind,
        "masks": masks,
        "fill": result.text,
        "exact_match": exact_match(result.text, task.middle),
        "syntax_valid": syntax_valid(task, result.text),
        "iterations": s.iterations,
        "text_tokens": s.text_tokens,
        "wall_s": s.wall_s,
    }


def runnable(families: Sequence[str], models) -> list[str]:
    """The families these models can run: an AR alone runs only fim, and only if it knows FIM."""
    from codila_engine.models.checkpoint import load_tokenizer
    from codila_engine.decoding.fim import FimTokens, NoFimTokens

    have = {"dlm": models.dlm is not None, "ar": models.ar is not None}
    runs = [f for f in families if all(have[m] for m in NEEDS.get(f, ("dlm", "ar")))]
    if "fim" in runs:
        try:
            FimTokens.of(load_tokenizer(Path(models.ar)))
        except (NoFimTokens, OSError):
            runs.remove("fim")  # an AR without FIM tokens (the paper's Qwen3 AR) has no FIM row
    return runs


def humaneval_rows(
    setup: Setup, models, device: str, limit: int, max_tokens: int, out: Path, progress: bool
) -> tuple[list[dict], dict]:
    """One configuration through the language server (run.evaluate); rows in summarize's terms."""
    from codila_engine.eval.humaneval import load_split
    from codila_engine.eval.run import evaluate
    from lsp_server.settings import DECODE_KEYS

    options = {
        "dlm": models.dlm,
        "ar": models.ar,
        "device": device,
        **{key: getattr(setup.cfg, name) for key, name in DECODE_KEYS.items()},
    }
    folder = out / "humaneval" / re.sub(r"[^A-Za-z0-9.]+", "-", setup.name).strip("-")
    summary = evaluate(
        "single-line", out_dir=folder, limit=limit, options=options, max_tokens=max_tokens, progress=progress
    )
    truth = {t.task_id: t.canonical_solution for t in load_split("single-line")}
    rows = [json.loads(line) for line in (folder / "tasks.jsonl").read_text(encoding="utf-8").splitlines()]
    return [
        {
            "passed": r["passed"],
            "syntax_valid": r["syntax_valid"],
            "exact_match": exact_match(r["completion"], truth[r["task_id"]]),
            "iterations": r["iterations"],
            "text_tokens": r["tokens"],
            "wall_s": (r["stats"] or {}).get("wall_s", 0.0),
        }
        for r in rows
    ], summary


# --- claims ------------------------------------------------------------------------------
def _main(bench: str) -> str:
    """The accuracy a benchmark is judged by: pass@1 where there are tests, else exact match."""
    return "pass_at_1" if bench == HUMANEVAL else "exact_match"


def _verdict(a: float, b: float) -> str:
    return "holds" if a > b else "tie" if a == b else "does not hold"


def claims(results: dict[str, dict[str, dict]], plan: Sequence[Setup]) -> list[dict]:
    """The paper's three claims per benchmark and block size, judged on the measured numbers."""
    found = []
    for bench, res in results.items():
        main = _main(bench)
        measures = (main, "syntax_valid")

        def compare(claim: str, a: str, b: str) -> None:
            if a in res and b in res and res[a]["n"]:
                parts = [(m, res[a][m], res[b][m], _verdict(res[a][m], res[b][m])) for m in measures]
                text = "; ".join(f"{LABELS[m]} {x:.3f} vs {y:.3f}: {v}" for m, x, y, v in parts)
                found.append(
                    {
                        "benchmark": bench,
                        "claim": claim,
                        "holds": parts[0][3] == "holds",
                        "text": f"{bench}: {claim} — {text}",
                    }
                )

        for b in sorted({s.block_size for s in plan if s.family not in ("dlm-k1", "fim")}):
            soft = f"CoDiLA B={b} static soft"
            compare(f"CoDiLA static soft beats DLM K={b}", soft, f"DLM K={b}")
            compare(f"CoDiLA static soft (B={b}) beats FIM by the AR alone", soft, "FIM (AR left to right)")
            compare(f"soft beats top-1 (B={b})", soft, f"CoDiLA B={b} static top-1")
            k1 = res.get("DLM K=1")
            dynamic = [s.name for s in plan if s.family == "dynamic" and s.block_size == b and s.name in res]
            if not k1 or not k1["n"] or not dynamic:
                continue
            ratio = {
                d: k1["iterations_per_token"] / res[d]["iterations_per_token"]
                if k1["iterations_per_token"] and res[d]["iterations_per_token"]
                else 0.0
                for d in dynamic
            }
            fast = [d for d in dynamic if ratio[d] >= 2] or dynamic
            best = max(fast, key=lambda d: (res[d][main], ratio[d]))
            gap = res[best][main] - k1[main]
            # a reference that scores 0 leaves nothing to come close to: the claim cannot be tested
            holds = None if not k1[main] else ratio[best] >= 2 and gap >= -CLOSE
            verdict = {None: "untestable (DLM K=1 scores 0)", True: "holds", False: "does not hold"}[holds]
            found.append(
                {
                    "benchmark": bench,
                    "claim": f"dynamic close to DLM K=1 with >= 2x fewer iterations (B={b})",
                    "holds": holds,
                    "text": f"{bench}: best dynamic at B={b} ({best}) {LABELS[main]} "
                    f"{res[best][main]:.3f} vs DLM K=1 {k1[main]:.3f} ({gap:+.3f}, close = within {CLOSE}), "
                    f"{ratio[best]:.2f}x fewer iterations per token: {verdict}",
                }
            )
    return found


# --- outputs -----------------------------------------------------------------------------
def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(table: dict) -> str:
    """One table per benchmark, then the claims; ready to paste into the README."""
    lines = [
        f"Measured {table['date'][:10]} on {table['device']}; {table['models'].get('name', 'models')}: DLM "
        f"`{table['models']['dlm']}`, AR `{table['models']['ar']}`; "
        f"temperature {table['settings']['temperature']}, seed "
        f"{table['settings']['seed']}.",
        "",
        f"`{table['command']}`",
        "",
    ]
    for bench, res in table["results"].items():
        he = bench == HUMANEVAL
        lines += [
            f"**{bench}** ({table['tasks'][bench]} tasks)",
            "",
            "| configuration | B | " + ("pass@1 | " if he else "") + "exact match | syntax-valid | "
            "iterations/token | tokens/s |",
            "|---|---:|" + ("---:|" if he else "") + "---:|---:|---:|---:|",
        ]
        for s in table["configurations"]:
            m = res[s["name"]]
            cells = [s["name"], str(s["block_size"])] + ([_num(m["pass_at_1"])] if he else [])
            cells += [
                _num(m["exact_match"]),
                _num(m["syntax_valid"]),
                _num(m["iterations_per_token"]),
                _num(m["tokens_per_s"], 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Claims:", ""] + [f"- {c['text']}" for c in table["claims"]]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path) -> None:
    """Accuracy against iterations per token, one column per benchmark (top: exact match or
    pass@1, bottom: syntax-valid); marker = configuration family, colour = B, dynamic rows
    labelled with their threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    benches = list(table["results"])
    fig, axes = plt.subplots(2, len(benches), figsize=(5.5 * len(benches), 8.5), squeeze=False)
    colors = {b: f"C{i}" for i, b in enumerate(sorted({s["block_size"] for s in table["configurations"]}))}
    for col, bench in enumerate(benches):
        for row, metric in enumerate((_main(bench), "syntax_valid")):
            ax = axes[row][col]
            for s in table["configurations"]:
                m = table["results"][bench][s["name"]]
                if m["iterations_per_token"] is None:
                    continue
                xy = (m["iterations_per_token"], m[metric])
                ax.scatter(*xy, marker=MARKERS[s["family"]], color=colors[s["block_size"]], s=60)
                if s["family"] == "dynamic":  # marker and colour name the rest; τ tells dynamic rows apart
                    ax.annotate(
                        f"τ={s['decode']['threshold']:g}", xy, fontsize=6, xytext=(4, 2), textcoords="offset points"
                    )
            ax.set(
                title=f"{bench} ({table['tasks'][bench]} tasks)",
                ylim=(-0.03, 1.03),
                ylabel=LABELS[metric],
                xlabel="iterations per token (lower = more parallel)",
            )
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker=mk, color="gray", linestyle="", label=f) for f, mk in MARKERS.items()]
    handles += [Line2D([], [], marker="o", color=c, linestyle="", label=f"B={b}") for b, c in colors.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


# --- the run -----------------------------------------------------------------------------
def build_table(
    models,
    *,
    out_dir: str | Path,
    data_dirs: Sequence[str | Path] = (),
    held_out_tasks: int = 100,
    held_out_fraction: float = 0.02,
    humaneval_limit: int = 100,
    humaneval_max_tokens: int = 24,
    block_sizes: Sequence[int] = BLOCK_SIZES,
    thresholds: Sequence[float] = THRESHOLDS,
    families: Sequence[str] = FAMILIES,
    base: DecodeConfig = DecodeConfig(),
    device: str = "cpu",
    command: str = "",
    progress: bool = True,
) -> dict:
    """Run every configuration on every benchmark; write table.json, table.md, the plot and the
    per-task rows (heldout.jsonl, humaneval/<configuration>/) to out_dir; return the table."""
    import torch

    from codila_engine.engine import Engine
    from codila_engine.eval.run import device_string
    from codila_engine.train.data import load_corpus

    plan = setups(block_sizes, thresholds, runnable(families, models), base)
    if not plan:
        raise ValueError(
            f"these models run none of the families {list(families)}: an AR alone runs fim, a DLM alone "
            "dlm-k1 and dlm-kb"
        )
    if held_out_tasks < 0 or humaneval_limit < 0:
        raise ValueError("--held-out-tasks and --humaneval-limit must be >= 0")
    if not held_out_tasks and not humaneval_limit:
        raise ValueError("nothing to measure: both --held-out-tasks and --humaneval-limit are 0")
    if held_out_tasks and not data_dirs:
        raise ValueError(
            "held-out tasks need the training data: pass --data-dir DIR (as given to `codila train`), "
            "or --held-out-tasks 0 for HumanEval only"
        )
    out, started = Path(out_dir), time.perf_counter()
    tasks: dict[str, list[HeldOutTask]] = {}
    if held_out_tasks:
        engine = Engine.load(
            models.dlm, models.ar, device=device
        )  # first: a bad model folder fails before the corpus is read
        corpus = load_corpus(data_dirs, held_out_fraction=held_out_fraction, progress=progress)
        if not corpus.held_out:
            raise ValueError(
                f"no held-out files in {list(map(str, data_dirs))} at --held-out-fraction "
                f"{held_out_fraction}: give more data or a larger fraction"
            )
        tasks = {f"held-out {kind}": ts for kind, ts in build_tasks(corpus.held_out, held_out_tasks).items()}
        for bench, bench_tasks in tasks.items():
            if len(bench_tasks) < held_out_tasks:
                print(f"note: only {len(bench_tasks)} {bench} tasks in {len(corpus.held_out)} held-out files")
    results: dict[str, dict[str, dict]] = {bench: {} for bench in tasks}
    out.mkdir(parents=True, exist_ok=True)
    if tasks:
        total = len(plan) * sum(map(len, tasks.values()))
        with (
            open(out / "heldout.jsonl", "w", encoding="utf-8") as rows_file,
            tqdm(total=total, unit="task", disable=not progress, dynamic_ncols=True) as bar,
        ):
            for setup in plan:
                bar.set_description(setup.name)
                for bench, bench_tasks in tasks.items():
                    rows = []
                    for task in bench_tasks:
                        rows.append(heldout_row(engine, setup, task))
                        rows_file.write(json.dumps(rows[-1]) + "\n")
                        bar.update()
                    results[bench][setup.name] = summarize(rows)
    counts = {bench: len(ts) for bench, ts in tasks.items()}
    if humaneval_limit:
        results[HUMANEVAL] = {}
        for setup in plan:
            if progress:
                tqdm.write(f"{HUMANEVAL} through codila-lsp: {setup.name}")
            rows, summary = humaneval_rows(setup, models, device, humaneval_limit, humaneval_max_tokens, out, progress)
            results[HUMANEVAL][setup.name] = {**summarize(rows), "request_errors": summary["metrics"]["request_errors"]}
            counts[HUMANEVAL] = len(rows)
    table = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "device": device_string(device),
        "torch_threads": torch.get_num_threads(),
        "models": {"dlm": str(models.dlm), "ar": str(models.ar), "name": models.name},
        "tasks": counts,
        "settings": {
            "temperature": base.temperature,
            "top_p": base.top_p,
            "seed": base.seed,
            "scope": base.scope,
            "block_sizes": list(block_sizes),
            "thresholds": list(thresholds),
            "families": list(families),
            "held_out_masks": "ceil(1.25 x the truth's tokens), rounded up to whole blocks",
            "humaneval_max_tokens": humaneval_max_tokens,
            "data_dirs": list(map(str, data_dirs)),
            "held_out_fraction": held_out_fraction,
            "close": CLOSE,
        },
        "configurations": [
            {"name": s.name, "family": s.family, "block_size": s.block_size, "decode": asdict(s.cfg)} for s in plan
        ],
        "results": results,
        "claims": claims(results, plan),
        "eval_s": round(time.perf_counter() - started, 1),
    }
    (out / "table.json").write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "table.md").write_text(markdown(table), encoding="utf-8")
    plot(table, out / "accuracy_vs_speed.png")
    return table


def cmd_table(args) -> int:
    import shlex
    import sys

    import torch

    from codila_engine.prepare.folders import model_folders
    from codila_engine.eval.client import ServerError

    models = model_folders(args.dlm, args.ar)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the language servers started for HumanEval
    out = args.out or Path("runs/eval") / f"table-{time.strftime('%Y%m%d-%H%M%S')}"
    base = DecodeConfig(temperature=args.temperature, seed=args.seed)
    try:
        table = build_table(
            models,
            out_dir=out,
            data_dirs=args.data_dir or (),
            held_out_tasks=args.held_out_tasks,
            held_out_fraction=args.held_out_fraction,
            humaneval_limit=args.humaneval_limit,
            humaneval_max_tokens=args.humaneval_max_tokens,
            block_sizes=args.block_sizes,
            thresholds=args.thresholds,
            families=args.configs,
            base=base,
            device=args.device,
            command=shlex.join(["codila"] + sys.argv[1:]),
            progress=args.progress,
        )
    except ServerError as exc:
        print(f"codila eval table: {exc}", file=sys.stderr)
        return 1
    print("\n".join(c["text"] for c in table["claims"]))
    print(f"wrote {out / 'table.json'}, {out / 'table.md'} and {out / 'accuracy_vs_speed.png'}")
    return 0


def add_table_subcommand(benchmarks) -> None:
    p = benchmarks.add_parser(
        "table",
        help="the README table: DLM baselines vs CoDiLA variants on held-out files and HumanEval-Infilling single-line",
    )
    p.add_argument(
        "--dlm",
        help="Dream-format DLM folder (default: the pair installed in codila_engine/assets/, if any, else none)",
    )
    p.add_argument("--ar", help="Qwen3 or Qwen2 AR folder (default: the shipped pair's, else the default model)")
    p.add_argument("--device", default="cpu", help="where to decode (default cpu: the table reports CPU speed)")
    p.add_argument(
        "--data-dir",
        action="append",
        help="training data folder (repeatable; held-out files come from its held-out split)",
    )
    p.add_argument(
        "--held-out-fraction",
        type=float,
        default=0.02,
        help="fraction of documents held out, 0-1, as given to `codila train`",
    )
    p.add_argument(
        "--held-out-tasks", type=int, default=100, help="held-out file tasks per kind (single-line, multi-line)"
    )
    p.add_argument(
        "--humaneval-limit",
        type=int,
        default=100,
        help="N single-line tasks spread over all problems, the same for every row (0: skip)",
    )
    p.add_argument("--humaneval-max-tokens", type=int, default=24, help="span per HumanEval infill, in masked tokens")
    p.add_argument(
        "--block-sizes",
        type=int,
        nargs="+",
        default=list(BLOCK_SIZES),
        metavar="B",
        help="CoDiLA block sizes, in tokens",
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
        default=list(FAMILIES),
        metavar="FAMILY",
        help=f"configuration families to run, of {', '.join(FAMILIES)} (default: all that the models "
        "can run: fim alone for the default model)",
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
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=cmd_table)
