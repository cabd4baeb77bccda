"""`codila eval table`: the README's measured comparison of decoders, in one command.

Benchmarks: single-line and multi-line infilling of held-out Python files (decoded directly on
the engine) and HumanEval-Infilling single-line and multi-line (through the language server,
like an editor). Rows, as issue 11 names them: the FIM reference (the base AR, left to right);
DLM K=1; and at the reference block size R (4 if measured, else the first --block-sizes) DLM
K=R, CoDiLA static soft, static top-1 and dynamic at each threshold; CoDiLA static soft at every
other block size. All share one sampling setup (temperature, top-p, seed), so they differ only
in the decoder.

A held-out task gets ceil(1.25 x the truth's token count) masks (the engine rounds up to whole
blocks); a HumanEval task a fixed span (`--humaneval-max-tokens`, `--humaneval-multi-max-tokens`).
Iterations per token are total iterations / total tokens of the final texts (EOS dropped in
infilling does not count); tokens/s are those text tokens / total decode wall time; first draft
is the median time from the request to the first committed block.

Every row is kept in <out>/rows/ with the settings that made it, so `--resume` measures only
what is missing: a long table can be built over several runs (or sessions).

Claims, per benchmark, judged by pass@1 on HumanEval and exact match on held-out files:
"beats" holds when strictly higher (syntax-valid is shown beside it); "dynamic comes close to
K=1 with >= 2x fewer iterations" holds when the best dynamic threshold among those with at
least 2x fewer iterations per token than K=1 is at most CLOSE below K=1, and is untestable
(`holds` None) when K=1 itself scores 0. The goal (CoDiLA B=4 within GOAL_GAP of FIM at >=
GOAL_SPEEDUP x its tokens/s) and the default-decoder rule (CoDiLA B=4 static reaches half of
FIM's single-line pass@1) are judged the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from codila_engine.config import DecodeConfig
from codila_engine.eval.heldout import KINDS, HeldOutTask, build_tasks, exact_match, syntax_valid

FAMILIES = ("fim", "dream", "dlm-k1", "dlm-kb", "static-soft", "static-top1", "dynamic")
DEFAULT_FAMILIES = tuple(f for f in FAMILIES if f != "dream")  # Dream's sampler is an extra, not a paper row
NEEDS = {"fim": ("ar",), "dream": ("dlm",), "dlm-k1": ("dlm",), "dlm-kb": ("dlm",)}  # the rest need both models
BLOCK_SIZES, THRESHOLDS = (2, 4, 8), (0.1, 0.3, 0.6)
HUMANEVAL, HUMANEVAL_MULTI = "humaneval single-line", "humaneval multi-line"
SPLITS = {HUMANEVAL: "single-line", HUMANEVAL_MULTI: "multi-line"}
BENCHMARKS = tuple(f"held-out {kind}" for kind in KINDS) + (HUMANEVAL, HUMANEVAL_MULTI)
CLOSE = 0.02  # "comes close": at most this far (absolute) below DLM K=1
GOAL_GAP, GOAL_SPEEDUP = 0.05, 1.5  # issue 11's goal: CoDiLA B=4 within 5 points of FIM at >= 1.5x its speed
FIM_ROW = "FIM (AR left to right)"
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


def reference_block_size(block_sizes: Sequence[int]) -> int:
    """The block size the paper's comparisons are made at: 4 where measured, else the first."""
    return 4 if 4 in block_sizes else block_sizes[0]


def setups(
    block_sizes: Sequence[int] = BLOCK_SIZES,
    thresholds: Sequence[float] = THRESHOLDS,
    families: Sequence[str] = DEFAULT_FAMILIES,
    base: DecodeConfig = DecodeConfig(),
) -> list[Setup]:
    """The table's configurations, in row order (see the module docstring)."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown configuration famil(ies) {unknown}; choose from {list(FAMILIES)}")
    r = reference_block_size(block_sizes)
    codila = base.with_options(decoder="codila", block_size=r, mode="static")
    rows = [
        Setup(FIM_ROW, "fim", 1, base.with_options(decoder="fim", block_size=1)),
        Setup("Dream sampler (a step per token)", "dream", 1, base.with_options(decoder="dream", block_size=1)),
        Setup("DLM K=1", "dlm-k1", 1, base.with_options(decoder="dlm", block_size=1, tokens_per_step=1)),
        Setup(f"DLM K={r}", "dlm-kb", r, base.with_options(decoder="dlm", block_size=r, tokens_per_step=r)),
    ]
    rows += [
        Setup(f"CoDiLA B={b} static soft", "static-soft", b, codila.with_options(block_size=b, conditioning="soft"))
        for b in sorted(block_sizes)
    ]
    rows.append(Setup(f"CoDiLA B={r} static top-1", "static-top1", r, codila.with_options(conditioning="top1")))
    rows += [
        Setup(f"CoDiLA B={r} dynamic τ={t:g}", "dynamic", r, codila.with_options(mode="dynamic", threshold=t))
        for t in thresholds
    ]
    return [s for s in rows if s.family in families]


def summarize(rows: Sequence[dict]) -> dict:
    """Quality over all tasks; speed as totals (text tokens / iterations and / seconds)."""
    n, tokens = len(rows), sum(r["text_tokens"] for r in rows)
    wall, iterations = sum(r["wall_s"] for r in rows), sum(r["iterations"] for r in rows)
    first = [r["first_draft_s"] for r in rows if r.get("first_draft_s") is not None]

    def rate(key: str) -> float | None:
        return sum(r[key] for r in rows) / n if n and key in rows[0] else None

    return {
        "n": n,
        "syntax_valid": rate("syntax_valid"),
        "exact_match": rate("exact_match"),
        "pass_at_1": rate("passed"),
        "iterations_per_token": iterations / tokens if tokens else None,
        "tokens_per_s": tokens / wall if wall else None,
        "first_draft_s": statistics.median(first) if first else None,
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
        "first_draft_s": s.first_commit_s,
    }


def runnable(families: Sequence[str], models, fim_ar: str | None) -> list[str]:
    """The families these models can run: fim needs an AR that knows FIM (`fim_ar`)."""
    from codila_engine.decoding.fim import FimTokens, NoFimTokens
    from codila_engine.models.checkpoint import load_tokenizer

    have = {"dlm": models.dlm is not None, "ar": models.ar is not None}
    runs = [f for f in families if f == "fim" or all(have[m] for m in NEEDS.get(f, ("dlm", "ar")))]
    if "fim" in runs:
        try:
            if fim_ar is None:
                raise NoFimTokens("no AR")
            FimTokens.of(load_tokenizer(Path(fim_ar)))
        except (NoFimTokens, OSError):
            runs.remove("fim")  # an AR without FIM tokens (the paper's Qwen3 AR) has no FIM row
    return runs


def humaneval_rows(
    bench: str, setup: Setup, options: dict, limit: int, max_tokens: int, folder: Path, progress: bool
) -> tuple[list[dict], dict]:
    """One configuration through the language server (run.evaluate); rows in summarize's terms."""
    from codila_engine.eval.humaneval import load_split
    from codila_engine.eval.run import evaluate
    from lsp_server.settings import DECODE_KEYS

    options = {**options, **{key: getattr(setup.cfg, name) for key, name in DECODE_KEYS.items()}}
    summary = evaluate(
        SPLITS[bench], out_dir=folder, limit=limit, options=options, max_tokens=max_tokens, progress=progress
    )
    truth = {t.task_id: t.canonical_solution for t in load_split(SPLITS[bench])}
    rows = [json.loads(line) for line in (folder / "tasks.jsonl").read_text(encoding="utf-8").splitlines()]
    return [
        {
            "passed": r["passed"],
            "syntax_valid": r["syntax_valid"],
            "exact_match": exact_match(r["completion"], truth[r["task_id"]]),
            "iterations": r["iterations"],
            "text_tokens": r["tokens"],
            "wall_s": (r["stats"] or {}).get("wall_s", 0.0),
            "first_draft_s": r["first_draft_s"],
        }
        for r in rows
    ], summary


# --- rows kept between runs ------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=]+", "-", text).strip("-")


class RowStore:
    """One JSON file per (benchmark, configuration) under <out>/rows/, with a key made of
    everything that decides the row (models, tasks, decoding options, span); `get` returns a
    stored row only when its key matches, so a changed setting is measured again."""

    def __init__(self, out: Path, resume: bool) -> None:
        self.folder, self.resume = out / "rows", resume

    @staticmethod
    def key(**parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _path(self, bench: str, setup: Setup) -> Path:
        return self.folder / _slug(bench) / f"{_slug(setup.name)}.json"

    def get(self, bench: str, setup: Setup, key: str) -> dict | None:
        path = self._path(bench, setup)
        if not (self.resume and path.is_file()):
            return None
        stored = json.loads(path.read_text(encoding="utf-8"))
        return stored["result"] if stored.get("key") == key else None

    def put(self, bench: str, setup: Setup, key: str, result: dict, rows: Sequence[dict]) -> None:
        path = self._path(bench, setup)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "result": result, "rows": list(rows)}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)


# --- claims ------------------------------------------------------------------------------
def _main(bench: str) -> str:
    """The accuracy a benchmark is judged by: pass@1 where there are tests, else exact match."""
    return "pass_at_1" if bench in SPLITS else "exact_match"


def _verdict(a: float, b: float) -> str:
    return "holds" if a > b else "tie" if a == b else "does not hold"


def claims(results: dict[str, dict[str, dict]], plan: Sequence[Setup]) -> list[dict]:
    """The paper's claims, issue 11's goal and the default-decoder rule, judged per benchmark at
    the reference block size on the measured numbers."""
    found = []
    r = reference_block_size([s.block_size for s in plan if s.family not in ("dlm-k1", "fim", "dream")] or [4])
    soft, top1 = f"CoDiLA B={r} static soft", f"CoDiLA B={r} static top-1"
    for bench, res in results.items():
        main = _main(bench)
        measures = (main, "syntax_valid")

        def claim(text: str, holds: bool | None) -> None:
            found.append(
                {"benchmark": bench, "claim": text.split(" — ")[0], "holds": holds, "text": f"{bench}: {text}"}
            )

        def compare(name: str, a: str, b: str) -> None:
            if a in res and b in res and res[a]["n"]:
                parts = [(m, res[a][m], res[b][m], _verdict(res[a][m], res[b][m])) for m in measures]
                text = "; ".join(f"{LABELS[m]} {x:.3f} vs {y:.3f}: {v}" for m, x, y, v in parts)
                claim(f"{name} — {text}", parts[0][3] == "holds")

        compare(f"CoDiLA static soft beats DLM K={r} (equal parallelism)", soft, f"DLM K={r}")
        compare(f"soft beats top-1 (B={r})", soft, top1)
        if soft in res and FIM_ROW in res and res[soft]["tokens_per_s"] and res[FIM_ROW]["tokens_per_s"]:
            a, f = res[soft], res[FIM_ROW]
            gap, speedup = a[main] - f[main], a["tokens_per_s"] / f["tokens_per_s"]
            claim(
                f"goal: CoDiLA B={r} within {GOAL_GAP:.2f} of FIM at >= {GOAL_SPEEDUP}x its tokens/s — "
                f"{LABELS[main]} {a[main]:.3f} vs {f[main]:.3f} ({gap:+.3f}), {speedup:.2f}x FIM's tokens/s: "
                f"{'holds' if gap >= -GOAL_GAP and speedup >= GOAL_SPEEDUP else 'does not hold'}",
                gap >= -GOAL_GAP and speedup >= GOAL_SPEEDUP,
            )
            if bench == HUMANEVAL:
                half = a[main] >= f[main] / 2
                verdict = "holds (default becomes codila)" if half else "does not hold (default stays fim)"
                claim(
                    f"default-decoder rule: CoDiLA B={r} static reaches half of FIM's single-line pass@1 — "
                    f"{a[main]:.3f} vs {f[main] / 2:.3f}: {verdict}",
                    half,
                )
        k1 = res.get("DLM K=1")
        dynamic = [s.name for s in plan if s.family == "dynamic" and s.name in res]
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
        claim(
            f"dynamic close to DLM K=1 with >= 2x fewer iterations (B={r}) — best dynamic ({best}) "
            f"{LABELS[main]} {res[best][main]:.3f} vs DLM K=1 {k1[main]:.3f} ({gap:+.3f}, close = within {CLOSE}), "
            f"{ratio[best]:.2f}x fewer iterations per token: {verdict}",
            holds,
        )
    return found


# --- outputs -----------------------------------------------------------------------------
def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(table: dict) -> str:
    """One table per benchmark, then the claims; the README's block between README_MARKERS."""
    lines = [
        f"Measured {table['date'][:10]} on {table['device']}; {table['models'].get('name', 'models')}: DLM "
        f"`{table['models']['dlm']}`, AR `{table['models']['ar']}`, FIM row `{table['models'].get('fim_ar')}`; "
        f"temperature {table['settings']['temperature']}, seed {table['settings']['seed']}.",
        "",
        f"`{table['command']}`",
        "",
    ]
    for bench, res in table["results"].items():
        he = bench in SPLITS
        lines += [
            f"**{bench}** ({table['tasks'][bench]} tasks)",
            "",
            "| configuration | B | " + ("pass@1 | " if he else "") + "exact match | syntax-valid | "
            "iterations/token | tokens/s | first draft (s) |",
            "|---|---:|" + ("---:|" if he else "") + "---:|---:|---:|---:|---:|",
        ]
        for s in table["configurations"]:
            if s["name"] not in res:
                continue
            m = res[s["name"]]
            cells = [s["name"], str(s["block_size"])] + ([_num(m["pass_at_1"])] if he else [])
            cells += [
                _num(m["exact_match"]),
                _num(m["syntax_valid"]),
                _num(m["iterations_per_token"]),
                _num(m["tokens_per_s"], 1),
                _num(m.get("first_draft_s"), 2),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Claims:", ""] + [f"- {c['text']}" for c in table["claims"]]
    return "\n".join(lines) + "\n"


README_MARKERS = (
    "<!-- results: generated by `codila eval render` from docs/eval/results.json -->",
    "<!-- /results -->",
)


def readme_block(text: str, table: dict) -> str:
    """`text` (a README) with the block between README_MARKERS replaced by the table's markdown."""
    begin, end = README_MARKERS
    if begin not in text or end not in text:
        raise ValueError(f"the README has no results block: add the two lines {begin} and {end} where it goes")
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + markdown(table) + end + rest.split(end, 1)[1]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both speed (x) and accuracy (y), by increasing speed."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):  # fastest first
        if not front or y > front[-1][1]:
            front.append((x, y))
    return sorted(front)


def plot(table: dict, path: Path) -> None:
    """Accuracy (pass@1 or exact match) against CPU tokens/s, one panel per benchmark, with the
    Pareto front; marker = configuration family, colour = B, dynamic rows labelled with τ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    benches = list(table["results"])
    fig, axes = plt.subplots(1, len(benches), figsize=(5.2 * len(benches), 4.6), squeeze=False)
    colors = {b: f"C{i}" for i, b in enumerate(sorted({s["block_size"] for s in table["configurations"]}))}
    for ax, bench in zip(axes[0], benches):
        metric, points = _main(bench), []
        for s in table["configurations"]:
            m = table["results"][bench].get(s["name"])
            if not m or not m["tokens_per_s"] or m[metric] is None:
                continue
            xy = (m["tokens_per_s"], m[metric])
            points.append(xy)
            ax.scatter(*xy, marker=MARKERS[s["family"]], color=colors[s["block_size"]], s=60, zorder=3)
            if s["family"] == "dynamic":  # marker and colour name the rest; τ tells dynamic rows apart
                ax.annotate(
                    f"τ={s['decode']['threshold']:g}", xy, fontsize=6, xytext=(4, 2), textcoords="offset points"
                )
        if points:
            front = pareto_front(points)
            ax.step(*zip(*front), where="post", color="gray", alpha=0.5, zorder=2, label="Pareto front")
            ax.set_xscale("log")
        ax.set(
            title=f"{bench} ({table['tasks'][bench]} tasks)",
            ylim=(-0.03, 1.03),
            ylabel=LABELS[metric],
            xlabel=f"tokens/s on {table['device']}",
        )
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker=mk, color="gray", linestyle="", label=f) for f, mk in MARKERS.items()]
    handles += [Line2D([], [], marker="o", color=c, linestyle="", label=f"B={b}") for b, c in colors.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


# --- the run -----------------------------------------------------------------------------
def _heldout_tasks(held_out_dirs, data_dirs, held_out_fraction, per_kind, progress) -> dict[str, list[HeldOutTask]]:
    """Held-out file tasks: every file of --held-out-dir (whole packages kept out of training), or
    the held-out split of --data-dir at --held-out-fraction (as `codila train` drew it)."""
    if held_out_dirs:
        from codila_engine.train.corpus import read_python_dirs

        held_out, _ = read_python_dirs(held_out_dirs, progress)
    else:
        from codila_engine.train.data import load_corpus

        held_out = load_corpus(data_dirs, held_out_fraction=held_out_fraction, progress=progress).held_out
    if not held_out:
        where = held_out_dirs or data_dirs
        raise ValueError(f"no held-out files in {list(map(str, where))}: give more data or a larger fraction")
    tasks = {f"held-out {kind}": ts for kind, ts in build_tasks(held_out, per_kind).items()}
    for bench, bench_tasks in tasks.items():
        if len(bench_tasks) < per_kind:
            print(f"note: only {len(bench_tasks)} {bench} tasks in {len(held_out)} held-out files")
    return tasks


def build_table(
    models,
    *,
    out_dir: str | Path,
    fim_ar: str | None = None,
    data_dirs: Sequence[str | Path] = (),
    held_out_dirs: Sequence[str | Path] = (),
    held_out_tasks: int = 100,
    held_out_fraction: float = 0.02,
    humaneval_limit: int = 164,
    humaneval_max_tokens: int = 24,
    humaneval_multi_limit: int = 50,
    humaneval_multi_max_tokens: int = 64,
    block_sizes: Sequence[int] = BLOCK_SIZES,
    thresholds: Sequence[float] = THRESHOLDS,
    families: Sequence[str] = DEFAULT_FAMILIES,
    base: DecodeConfig = DecodeConfig(),
    device: str = "cpu",
    command: str = "",
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Run every configuration on every benchmark; write results.json, table.md, the Pareto plot
    and the per-row files (rows/<benchmark>/<configuration>.json, humaneval/...) to out_dir."""
    import torch

    from codila_engine.engine import Engine
    from codila_engine.eval.run import device_string

    plan = setups(block_sizes, thresholds, runnable(families, models, fim_ar), base)
    if not plan:
        raise ValueError(
            f"these models run none of the families {list(families)}: an AR alone runs fim, a DLM alone "
            "dlm-k1 and dlm-kb"
        )
    limits = {HUMANEVAL: humaneval_limit, HUMANEVAL_MULTI: humaneval_multi_limit}
    spans = {HUMANEVAL: humaneval_max_tokens, HUMANEVAL_MULTI: humaneval_multi_max_tokens}
    if min(held_out_tasks, *limits.values()) < 0:
        raise ValueError("--held-out-tasks, --humaneval-limit and --humaneval-multi-limit must be >= 0")
    if not held_out_tasks and not any(limits.values()):
        raise ValueError("nothing to measure: --held-out-tasks, --humaneval-limit and --humaneval-multi-limit are 0")
    if held_out_tasks and not (data_dirs or held_out_dirs):
        raise ValueError(
            "held-out tasks need files: pass --held-out-dir DIR (packages kept out of training) or --data-dir "
            "DIR (as given to `codila train`), or --held-out-tasks 0 for HumanEval only"
        )
    out, started = Path(out_dir), time.perf_counter()
    store = RowStore(out, resume)
    model_key = {"dlm": str(models.dlm), "ar": str(models.ar), "fim_ar": str(fim_ar), "device": device}
    engines: dict[str, Engine] = {}

    def engine_for(setup: Setup) -> Engine:  # fim rows run the base AR alone, the rest the pair
        which = "fim" if setup.family == "fim" else "pair"
        if which not in engines:
            engines[which] = (
                Engine.load(None, fim_ar, device=device)
                if which == "fim"
                else Engine.load(models.dlm, models.ar, device=device)
            )
        return engines[which]

    tasks: dict[str, list[HeldOutTask]] = {}
    if held_out_tasks:
        engine_for(plan[-1])  # first: a bad model folder fails before the files are read
        tasks = _heldout_tasks(held_out_dirs, data_dirs, held_out_fraction, held_out_tasks, progress)
    results: dict[str, dict[str, dict]] = {bench: {} for bench in tasks}
    counts = {bench: len(ts) for bench, ts in tasks.items()}
    out.mkdir(parents=True, exist_ok=True)
    for bench, bench_tasks in tasks.items():
        ids = [t.task_id for t in bench_tasks]
        for setup in tqdm(plan, desc=bench, unit="configuration", disable=not progress, dynamic_ncols=True):
            key = store.key(bench=bench, tasks=ids, decode=asdict(setup.cfg), **model_key)
            result = store.get(bench, setup, key)
            if result is None:
                rows = [heldout_row(engine_for(setup), setup, task) for task in bench_tasks]
                result = summarize(rows)
                store.put(bench, setup, key, result, rows)
            results[bench][setup.name] = result
    engines.clear()  # the language servers below load their own models
    for bench, limit in limits.items():
        if not limit:
            continue
        results[bench] = {}
        for setup in plan:
            options = {"dlm": models.dlm, "ar": models.ar, "device": device}
            if setup.family == "fim":
                options |= {"dlm": None, "ar": fim_ar}
            key = store.key(bench=bench, limit=limit, span=spans[bench], decode=asdict(setup.cfg), **options)
            result = store.get(bench, setup, key)
            if result is None:
                if progress:
                    tqdm.write(f"{bench} through codila-lsp: {setup.name}")
                folder = out / "humaneval" / _slug(bench) / _slug(setup.name)
                rows, summary = humaneval_rows(bench, setup, options, limit, spans[bench], folder, progress)
                result = {**summarize(rows), "request_errors": summary["metrics"]["request_errors"]}
                store.put(bench, setup, key, result, rows)
            results[bench][setup.name] = result
            counts[bench] = result["n"]
    table = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "device": device_string(device),
        "torch_threads": torch.get_num_threads(),
        "models": {"dlm": str(models.dlm), "ar": str(models.ar), "fim_ar": str(fim_ar), "name": models.name},
        "tasks": counts,
        "settings": {
            "temperature": base.temperature,
            "top_p": base.top_p,
            "seed": base.seed,
            "scope": base.scope,
            "block_sizes": list(block_sizes),
            "reference_block_size": reference_block_size(block_sizes),
            "thresholds": list(thresholds),
            "families": list(families),
            "held_out_masks": "ceil(1.25 x the truth's tokens), rounded up to whole blocks",
            "humaneval_max_tokens": humaneval_max_tokens,
            "humaneval_multi_max_tokens": humaneval_multi_max_tokens,
            "data_dirs": list(map(str, data_dirs)),
            "held_out_dirs": list(map(str, held_out_dirs)),
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
    write_outputs(table, out)
    return table


def write_outputs(table: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "table.md").write_text(markdown(table), encoding="utf-8")
    plot(table, out / "pareto.png")


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
    import sys

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
            progress=args.progress,
        )
    except ServerError as exc:
        print(f"codila eval table: {exc}", file=sys.stderr)
        return 1
    print("\n".join(c["text"] for c in table["claims"]))
    print(f"wrote {out / 'results.json'}, {out / 'table.md'} and {out / 'pareto.png'}")
    return 0


def cmd_render(args) -> int:
    """README table and Pareto plot from a results.json, with nothing measured."""
    table = json.loads(Path(args.results).read_text(encoding="utf-8"))
    out = Path(args.results).parent
    write_outputs(table, out)
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(readme_block(readme.read_text(encoding="utf-8"), table), encoding="utf-8")
    print(
        f"wrote {out / 'table.md'} and {out / 'pareto.png'}"
        + (f", and the table into {args.readme}" if args.readme else "")
    )
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
        help="reuse rows already in --out that were measured with the same settings; measure the rest",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=cmd_table)
