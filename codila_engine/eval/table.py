"""`codila eval table`: the README's measured comparison of decoders, in one command.

Benchmarks: single-line and multi-line infilling of held-out Python files (decoded directly on
the engine) and HumanEval-Infilling single-line and multi-line (through the language server,
like an editor). The rows are the configurations of setups.py; claims.py judges the claims from
the results and report.py writes them out (results.json, table.md, the Pareto plot).

A held-out task gets ceil(1.25 x the truth's token count) masks (the engine rounds up to whole
blocks); a HumanEval task a fixed span (`--humaneval-max-tokens`, `--humaneval-multi-max-tokens`).
Iterations per token are total iterations / total tokens of the final texts (EOS dropped in
infilling does not count); tokens/s are those text tokens / total decode wall time; first draft
is the median time from the request to the first committed block.

Every row is kept in <out>/rows/ with the settings that made it, and each row's tasks in
<out>/held-out/ or <out>/humaneval/ as they finish (rows.py), so `--resume` measures only what
is missing, down to the task: a long table can be built over several runs (or sessions).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from codila_engine.config import DecodeConfig
from codila_engine.eval.claims import claims
from codila_engine.eval.heldout import HeldOutTask, build_tasks, exact_match, syntax_valid
from codila_engine.eval.report import write_outputs
from codila_engine.eval.rows import RowStore, TaskLog, row_key, slug, summarize
from codila_engine.eval.setups import (
    BLOCK_SIZES,
    CLOSE,
    DEFAULT_FAMILIES,
    HUMANEVAL,
    HUMANEVAL_MULTI,
    NEEDS,
    SPLITS,
    THRESHOLDS,
    Setup,
    reference_block_size,
    setups,
)


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
    bench: str, setup: Setup, options: dict, limit: int, max_tokens: int, folder: Path, progress: bool, resume: bool
) -> tuple[list[dict], dict]:
    """One configuration through the language server (run.evaluate); rows in summarize's terms."""
    from codila_engine.eval.humaneval import load_split
    from codila_engine.eval.run import evaluate
    from lsp_server.settings import DECODE_KEYS

    options = {**options, **{key: getattr(setup.cfg, name) for key, name in DECODE_KEYS.items()}}
    summary = evaluate(
        SPLITS[bench],
        out_dir=folder,
        limit=limit,
        options=options,
        max_tokens=max_tokens,
        progress=progress,
        resume=resume,
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
    stored_only: bool = False,
    progress: bool = True,
) -> dict:
    """Run every configuration on every benchmark; write results.json, table.md, the Pareto plot
    and the per-row files (rows/<benchmark>/<configuration>.json, humaneval/...) to out_dir.
    `stored_only`: measure nothing; the table is made of the rows stored in out_dir, and those
    not stored are listed under "not_measured"."""
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
    store = RowStore(out, resume or stored_only)
    not_measured: dict[str, list[str]] = {}
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
        if not stored_only:
            engine_for(plan[-1])  # first: a bad model folder fails before the files are read
        tasks = _heldout_tasks(held_out_dirs, data_dirs, held_out_fraction, held_out_tasks, progress)
    results: dict[str, dict[str, dict]] = {bench: {} for bench in tasks}
    counts = {bench: len(ts) for bench, ts in tasks.items()}
    out.mkdir(parents=True, exist_ok=True)
    for bench, bench_tasks in tasks.items():
        ids = [t.task_id for t in bench_tasks]
        for setup in tqdm(plan, desc=bench, unit="configuration", disable=not progress, dynamic_ncols=True):
            key = row_key(bench=bench, tasks=ids, decode=asdict(setup.cfg), **model_key)
            result = store.get(bench, setup.name, key)
            if result is None and stored_only:
                not_measured.setdefault(bench, []).append(setup.name)
                continue
            if result is None:
                log_path = out / "held-out" / slug(bench) / slug(setup.name) / "tasks.jsonl"
                with TaskLog(log_path, key, ids, resume) as log:  # per task: a stopped row goes on with --resume
                    for task in bench_tasks[len(log.done) :]:
                        log.add(heldout_row(engine_for(setup), setup, task))
                rows = log.done
                result = summarize(rows)
                store.put(bench, setup.name, key, result, rows)
            results[bench][setup.name] = result
    engines.clear()  # the language servers below load their own models
    for bench, limit in limits.items():
        if not limit:
            continue
        results[bench], counts[bench] = {}, limit
        for setup in plan:
            options = {"dlm": models.dlm, "ar": models.ar, "device": device}
            if setup.family == "fim":
                options |= {"dlm": None, "ar": fim_ar}
            key = row_key(bench=bench, limit=limit, span=spans[bench], decode=asdict(setup.cfg), **options)
            result = store.get(bench, setup.name, key)
            if result is None and stored_only:
                not_measured.setdefault(bench, []).append(setup.name)
                continue
            if result is None:
                if progress:
                    tqdm.write(f"{bench} through codila-lsp: {setup.name}")
                folder = out / "humaneval" / slug(bench) / slug(setup.name)
                rows, summary = humaneval_rows(bench, setup, options, limit, spans[bench], folder, progress, resume)
                result = {**summarize(rows), "request_errors": summary["metrics"]["request_errors"]}
                store.put(bench, setup.name, key, result, rows)
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
        "not_measured": not_measured,
        "claims": claims(results, plan),
        "eval_s": round(time.perf_counter() - started, 1),
    }
    write_outputs(table, out)
    return table
