"""HumanEval-Infilling through the language server: the loop, the scoring and the metrics.

Each task is opened as a document (prompt + suffix) and filled at the boundary with
`codila/infill`, exactly as an editor would ask; the filled program then runs with its tests in
the sandbox. Per-task rows go to tasks.jsonl as they finish (a stopped run resumes from them), the
metrics to summary.json.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from codila_engine.eval.client import EvalClient, Reply, ServerError, server_command
from codila_engine.eval.execution import run_program
from codila_engine.eval.humaneval import Task, build_program, load_split, parses, sample_tasks
from codila_engine.eval.rows import TaskLog, row_key
from lsp_server.positions import offset_to_position


# --- metric helpers ---------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating linearly between ranks like numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q!r}")
    xs = sorted(values)
    rank = (len(xs) - 1) * q / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def spread(values: Sequence[float | None]) -> dict:
    """mean, p50 and p95 of the values that exist (None where there are none)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"n": 0, "mean": None, "p50": None, "p95": None}
    return {"n": len(xs), "mean": sum(xs) / len(xs), "p50": percentile(xs, 50), "p95": percentile(xs, 95)}


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def metrics(rows: Sequence[dict]) -> dict:
    """Aggregate task rows: quality over all tasks, speed over the tasks the server answered."""
    answered = [r for r in rows if r["error"] is None]
    stats = [r["stats"] for r in answered]
    return {
        "n": len(rows),
        "request_errors": len(rows) - len(answered),
        "first_error": next((r["error"] for r in rows if r["error"] is not None), None),
        "pass_at_1": _ratio(sum(r["passed"] for r in rows), len(rows)),
        "syntax_valid_rate": _ratio(sum(r["syntax_valid"] for r in rows), len(rows)),
        "latency_s": spread([r["latency_s"] for r in answered]),
        "first_block_s": spread([s.get("first_commit_s") for s in stats]),  # server: decode start -> 1st commit
        "first_draft_s": spread([r["first_draft_s"] for r in answered]),  # client: request -> 1st draft
        "tokens_per_s": _ratio(sum(s["text_tokens"] for s in stats), sum(s["wall_s"] for s in stats)),
        "tokens_per_s_mean": spread([s["tokens_per_s"] for s in stats])["mean"],
        "iterations_per_token": _ratio(sum(s["iterations"] for s in stats), sum(s["tokens"] for s in stats)),
        "produced_by": sorted({f"{s.get('decoder')} decoder, {s.get('model')}" for s in stats}),
    }


# --- one task ---------------------------------------------------------------------------
def task_uri(task: Task) -> str:
    return f"file:///humaneval/{task.task_id.replace('/', '_')}.py"


def score(task: Task, completion: str, timeout_s: float = 10.0) -> dict:
    """Run the filled program with its tests; one that does not parse fails without running."""
    program = build_program(task, completion)
    if not parses(program):
        return {
            "passed": False,
            "status": "failed",
            "message": "SyntaxError (the program does not parse; not run)",
            "syntax_valid": False,
        }
    result = run_program(program, timeout_s=timeout_s)
    return {"passed": result.passed, "status": result.status, "message": result.message, "syntax_valid": True}


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


def task_row(task: Task, reply: Reply, timeout_s: float = 10.0) -> dict:
    """The tasks.jsonl row for a reply; a failed request is a failed task with its error."""
    if reply.error is not None or reply.text is None:
        outcome = {
            "passed": False,
            "status": "request_error",
            "message": reply.error or "no text",
            "syntax_valid": False,
        }
    else:
        outcome = score(task, reply.text, timeout_s)
    stats = reply.stats or {}
    return {
        "task_id": task.task_id,
        "completion": reply.text or "",
        **outcome,
        "latency_s": _round(reply.latency_s),
        "first_block_s": stats.get("first_commit_s"),
        "first_draft_s": _round(reply.first_draft_s),
        "tokens": stats.get("text_tokens", 0),
        "iterations": stats.get("iterations", 0),
        "error": reply.error,
        "stats": reply.stats,
    }


# --- the loop ---------------------------------------------------------------------------
def device_string(device: str | None) -> str:
    """What the server decodes on, as far as this machine can tell (the server resolves 'auto')."""
    if device is None or device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = int(device.split(":")[1]) if device and ":" in device else 0
            return f"{device or 'cuda'} ({torch.cuda.get_device_name(index)})"
        if device is not None:
            return f"{device} (not available here)"
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{device or 'cpu'} ({cpu}, {os.cpu_count()} cores)"


async def _run(
    tasks: list[Task],
    client: EvalClient,
    max_tokens: int | None,
    timeout_s: float,
    log: TaskLog,
    progress: bool,
    single_line: bool = False,
) -> str | None:
    """Fill and score the tasks the log has not done; the server's error if it stopped."""
    stopped = None
    done = len(log.done)
    with tqdm(
        tasks[done:], total=len(tasks), initial=done, unit="task", disable=not progress, dynamic_ncols=True
    ) as bar:
        for task in bar:
            text = task.prompt + task.suffix
            position = offset_to_position(text, len(task.prompt))
            try:
                reply = await client.infill(task_uri(task), text, position, max_tokens, single_line=single_line)
            except ServerError as exc:
                stopped = str(exc)
                reply = Reply(None, None, None, None, error=stopped)
            log.add(await asyncio.to_thread(task_row, task, reply, timeout_s))
            passed = sum(r["passed"] for r in log.done)
            bar.set_postfix_str(f"pass@1 {passed / len(log.done):.3f} ({passed}/{len(log.done)})")
            if stopped:
                break
    return stopped


def evaluate(
    split: str,
    *,
    out_dir: str | Path,
    limit: int | None = None,
    seed: int = 0,
    options: dict | None = None,
    max_tokens: int | None = None,
    server_cmd: str | Sequence[str] | None = None,
    timeout_s: float = 10.0,
    request_timeout_s: float = 300.0,
    progress: bool = True,
    resume: bool = False,
) -> dict:
    """Evaluate one configuration; returns the summary also written to <out_dir>/summary.json.

    options are the server's initializationOptions (camelCase keys: dlm, ar, device, blockSize, ...);
    max_tokens is maxTokens per infill (None: the server's infillTokens). Raises ServerError when
    the server cannot start or dies; rows finished before a death are still written. `resume`
    keeps the rows of an earlier, stopped run in out_dir made with the same settings and fills
    only the tasks it had not done.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of tasks, got {limit}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"--max-tokens must be positive, got {max_tokens}")
    tasks = sample_tasks(load_split(split), limit, seed)
    options = dict(options or {})
    command = server_command(server_cmd)
    out = Path(out_dir)
    started, ids = time.perf_counter(), [t.task_id for t in tasks]
    key = row_key(split=split, tasks=ids, options=options, max_tokens=max_tokens, timeout_s=timeout_s, command=command)

    # on resume a request error is asked again: the server failed or died, the model never answered
    log = TaskLog(out / "tasks.jsonl", key, ids, resume, keep=lambda row: row["status"] != "request_error")

    async def main() -> str | None:
        if not log.todo:
            return None
        async with EvalClient(command, options, request_timeout_s=request_timeout_s) as client:
            single_line = split == "single-line"  # fim stops at the line's end, as the split's truth does
            with log:  # written once the server is up: a server that cannot start leaves no folder
                return await _run(tasks, client, max_tokens, timeout_s, log, progress, single_line)

    resumed = len(log.done)
    stopped = asyncio.run(main())
    rows = log.done
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "split": split,
        "n": len(rows),
        "limit": limit,
        "sample_seed": seed,
        "task_ids": ids,
        "settings": {
            "initialization_options": options,
            "max_tokens": max_tokens,
            "timeout_s": timeout_s,
            "request_timeout_s": request_timeout_s,
            "server_cmd": command,
        },
        "metrics": metrics(rows),
        "stopped": stopped,
        "resumed_tasks": resumed,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_string(options.get("device")),
        "eval_s": round(time.perf_counter() - started, 2),
        "files": {"tasks": str(out / "tasks.jsonl"), "summary": str(out / "summary.json")},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if stopped:
        raise ServerError(
            f"{stopped}\nstopped after {len(rows)} of {len(tasks)} tasks; partial results are in {out} "
            "(run again with --resume to go on from there)"
        )
    return summary
