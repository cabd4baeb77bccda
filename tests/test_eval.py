"""`codila eval humaneval-infilling`: metrics, scoring, and the real server driven over stdio."""

from __future__ import annotations

import json
import shlex
import sys
import time

import pytest

from codila_engine.cli import main
from codila_engine.eval.client import Reply, ServerError
from codila_engine.eval.humaneval import load_split, sample_tasks
from codila_engine.eval.run import evaluate, metrics, percentile, spread, task_row, task_uri

pytestmark = pytest.mark.usefixtures("sandbox_or_unsafe")

ROW_FIELDS = {
    "task_id",
    "completion",
    "passed",
    "status",
    "message",
    "syntax_valid",
    "latency_s",
    "first_block_s",
    "tokens",
    "iterations",
}
STATS = {"iterations": 2, "tokens": 8, "text_tokens": 6, "wall_s": 0.5, "first_commit_s": 0.1, "tokens_per_s": 12.0}

# A stand-in server: answers the warm-up, then an error, a null, a canonical fill with one draft,
# and dies on the next request, so the client's failure paths run without a model.
FAKE_SERVER = """
import os
from pygls.exceptions import JsonRpcInternalError
from pygls.lsp.server import LanguageServer
from codila_engine.eval.humaneval import load_split
from codila_engine.eval.run import task_uri

CANONICAL = {task_uri(t): t.canonical_solution for t in load_split("single-line")}
STATS = %r
server = LanguageServer("fake-codila", "0")
calls = []

@server.feature("codila/infill")
def infill(ls, params):
    calls.append(params)
    uri, rng = params.textDocument.uri, params.range._asdict()
    if len(calls) == 2:
        raise JsonRpcInternalError("boom from the fake server")
    if len(calls) == 3:
        return None
    if len(calls) == 5:
        os._exit(7)
    if len(calls) == 4:
        ls.protocol.notify("codila/draft", {"uri": uri, "id": ls.protocol.msg_id, "range": rng,
                                            "text": "...", "done": False})
    return {"range": rng, "text": CANONICAL.get(uri, ""), "stats": STATS}

server.start_io()
""" % (STATS,)


def test_percentiles_on_known_values():
    values = list(range(10, 0, -1))  # unsorted on purpose
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 10
    assert percentile([3.0], 95) == 3.0
    assert spread([1, None, 2, 3, 4]) == {"n": 4, "mean": 2.5, "p50": 2.5, "p95": pytest.approx(3.85)}
    assert spread([None]) == {"n": 0, "mean": None, "p50": None, "p95": None}
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1], 101)


def test_canonical_solutions_score_pass_at_1_of_one():
    tasks = load_split("single-line")[:2] + load_split("multi-line")[:2]
    rows = [task_row(t, Reply(t.canonical_solution, STATS, 0.25, 0.05)) for t in tasks]
    m = metrics(rows)
    assert (m["n"], m["pass_at_1"], m["syntax_valid_rate"], m["request_errors"]) == (4, 1.0, 1.0, 0)
    assert m["tokens_per_s"] == pytest.approx(12.0) and m["iterations_per_token"] == pytest.approx(0.25)
    assert m["latency_s"]["p50"] == pytest.approx(0.25)
    # the same path fails a wrong fill, an unparsable one and a failed request
    wrong = task_row(tasks[0], Reply(tasks[0].canonical_solution.replace("numbers", "numbers[:1]"), STATS, 0.3, 0.1))
    broken = task_row(tasks[1], Reply("    for (\n", STATS, 0.3, 0.1))
    failed = task_row(tasks[2], Reply(None, None, 1.0, None, error="timed out"))
    assert (wrong["passed"], wrong["syntax_valid"], wrong["message"]) == (False, True, "AssertionError")
    assert (broken["passed"], broken["syntax_valid"], broken["status"]) == (False, False, "failed")
    assert (failed["status"], failed["message"], failed["syntax_valid"]) == ("request_error", "timed out", False)
    m = metrics(rows + [wrong, broken, failed])
    assert m["pass_at_1"] == pytest.approx(4 / 7) and m["syntax_valid_rate"] == pytest.approx(5 / 7)
    assert m["request_errors"] == 1 and m["latency_s"]["n"] == 6  # speed only over answered requests


def test_eval_command_runs_five_tasks_end_to_end(tiny_pair, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "humaneval-infilling",
            "--split",
            "single-line",
            "--limit",
            "5",
            "--dlm",
            str(tiny_pair[0]),
            "--ar",
            str(tiny_pair[1]),
            "--device",
            "cpu",
            "--max-tokens",
            "8",
            "--block-size",
            "4",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    rows = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [t.task_id for t in sample_tasks(load_split("single-line"), 5)]
    assert len({r["task_id"].split("/")[2] for r in rows}) == 5  # five problems, not five lines of HumanEval/0
    for r in rows:
        assert ROW_FIELDS <= set(r) and r["error"] is None
        assert r["latency_s"] > 0 and r["iterations"] >= 1 and 1 <= r["tokens"] <= 8
        assert r["status"] in {"passed", "failed", "timeout", "error"}
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert summary["split"] == "single-line" and summary["n"] == 5 and summary["stopped"] is None
    assert summary["settings"]["initialization_options"]["blockSize"] == 4
    assert summary["settings"]["max_tokens"] == 8 and summary["device"].startswith("cpu")
    assert 0 <= m["pass_at_1"] <= 1 and 0 <= m["syntax_valid_rate"] <= 1
    for key in ("latency_s", "first_block_s", "first_draft_s"):
        assert m[key]["n"] == 5 and 0 < m[key]["p50"] <= m[key]["p95"], key
    assert m["first_draft_s"]["mean"] < m["latency_s"]["mean"]  # drafts stream before the reply
    assert m["tokens_per_s"] > 0 and m["iterations_per_token"] == pytest.approx(0.25)  # 8 tokens in blocks of 4
    assert "pass@1" in printed.out and str(out / "summary.json") in printed.out
    assert m["produced_by"] == [f"codila decoder, DLM {tiny_pair[0]} + AR {tiny_pair[1]}"]
    assert f"(codila decoder, DLM {tiny_pair[0]}" in printed.out


def test_server_that_exits_at_once_is_a_clear_error(tmp_path, capsys):
    started = time.monotonic()
    dies = shlex.join([sys.executable, "-c", "import sys; print('no models here', file=sys.stderr); sys.exit(3)"])
    rc = main(["eval", "humaneval-infilling", "--limit", "2", "--server-cmd", dies, "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 1 and "exited with code 3 during initialize" in err and "no models here" in err
    rc = main(["eval", "humaneval-infilling", "--server-cmd", "no-such-codila-server", "--out", str(tmp_path / "b")])
    assert rc == 1 and "could not start the language server 'no-such-codila-server'" in capsys.readouterr().err
    assert time.monotonic() - started < 20
    rc = main(["eval", "humaneval-infilling", "--think-ids", "1", "2", "--out", str(tmp_path / "c")])
    assert rc == 2 and "--think-ids: not a codila-lsp setting" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_request_errors_are_failed_tasks_and_server_death_stops(tmp_path):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    out = tmp_path / "eval"
    with pytest.raises(ServerError, match=r"(?s)exited with code 7 during the infill request.*after 4 of 6 tasks"):
        evaluate(
            "single-line",
            out_dir=out,
            limit=6,
            options={"device": "cpu"},
            server_cmd=[sys.executable, str(script)],
            progress=False,
        )
    rows = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["request_error", "request_error", "passed", "request_error"]
    assert "boom from the fake server" in rows[0]["message"] and "null" in rows[1]["message"]
    assert rows[2]["first_draft_s"] is not None and rows[2]["first_draft_s"] <= rows[2]["latency_s"]
    assert "exited with code 7" in rows[3]["message"] and rows[3]["latency_s"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert "exited with code 7" in summary["stopped"]
    assert summary["metrics"]["pass_at_1"] == pytest.approx(0.25) and summary["metrics"]["request_errors"] == 3


# A stand-in server that fills every task with its canonical solution, notes each request's URI
# in a file and dies on request number $FAKE_DIE_AT (never if 0). Request 1 is the client's warm-up.
RESUMABLE_SERVER = """
import os, sys
from pygls.lsp.server import LanguageServer
from codila_engine.eval.humaneval import load_split
from codila_engine.eval.run import task_uri

CANONICAL = {task_uri(t): t.canonical_solution for t in load_split("single-line")}
die_at, calls_file = int(os.environ["FAKE_DIE_AT"]), sys.argv[1]
server, calls = LanguageServer("fake-codila", "0"), []

@server.feature("codila/infill")
def infill(ls, params):
    calls.append(params.textDocument.uri)
    with open(calls_file, "a") as f:
        f.write(params.textDocument.uri + "\\n")
    if len(calls) == die_at:
        os._exit(7)
    return {"range": params.range._asdict(), "text": CANONICAL.get(params.textDocument.uri, ""), "stats": %r}

server.start_io()
""" % (STATS,)


def test_a_stopped_eval_resumes_at_its_first_task_not_done(tmp_path, monkeypatch):
    script, calls, out = tmp_path / "server.py", tmp_path / "calls.txt", tmp_path / "eval"
    script.write_text(RESUMABLE_SERVER)
    tasks = [task_uri(t) for t in sample_tasks(load_split("single-line"), 6)]

    def run(die_at: int, **kw) -> dict:
        calls.write_text("")
        monkeypatch.setenv("FAKE_DIE_AT", str(die_at))  # not in the command: that is part of the settings
        server = [sys.executable, str(script), str(calls)]
        options = {"device": "cpu"}
        return evaluate("single-line", out_dir=out, limit=6, options=options, server_cmd=server, progress=False, **kw)

    with pytest.raises(ServerError, match="after 3 of 6 tasks.*--resume"):
        run(die_at=4)  # warm-up, two tasks, then the server dies on the third
    assert [json.loads(line)["status"] for line in (out / "tasks.jsonl").read_text().splitlines()] == [
        "passed",
        "passed",
        "request_error",
    ]
    summary = run(die_at=0, resume=True)
    asked = calls.read_text().split()[1:]  # after the warm-up
    assert asked == tasks[2:]  # the task the server died on is asked again, the two before are kept
    rows = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [t.task_id for t in sample_tasks(load_split("single-line"), 6)]
    assert summary["resumed_tasks"] == 2 and summary["metrics"]["pass_at_1"] == 1.0 and summary["n"] == 6
    run(die_at=0, resume=True)
    assert calls.read_text() == ""  # nothing left to do: the server is not even started
    run(die_at=0, resume=True, max_tokens=7)
    assert calls.read_text().split()[1:] == tasks  # other settings: every task again
    run(die_at=0)
    assert calls.read_text().split()[1:] == tasks  # no resume: every task again


def test_models_that_cannot_load_stop_the_eval_before_any_task(tiny_pair, tmp_path):
    with pytest.raises(ServerError, match=r"not usable with these settings: could not load the models: DLM folder"):
        evaluate(
            "single-line",
            out_dir=tmp_path / "eval",
            limit=2,
            progress=False,
            options={"dlm": str(tmp_path / "missing"), "ar": str(tiny_pair[1]), "device": "cpu"},
        )
    assert not (tmp_path / "eval").exists()


def test_limit_samples_across_problems_reproducibly():
    tasks = load_split("single-line")
    first = sample_tasks(tasks, 164)
    assert len({t.task_id.split("/")[2] for t in first}) == 164  # one task from every problem
    assert first == sample_tasks(tasks, 164) and first != sample_tasks(tasks, 164, seed=1)
    assert sample_tasks(tasks, 200)[:164] == first and len({t.task_id for t in sample_tasks(tasks, 200)}) == 200
    assert sample_tasks(tasks, None) == tasks
