"""`codila eval table`: held-out infilling tasks, their scoring, the claims, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from codila_engine.cli import main
from codila_engine.eval.claims import claims
from codila_engine.eval.heldout import (
    PREFIX_CHARS,
    SUFFIX_CHARS,
    build_tasks,
    candidate_spans,
    cut,
    exact_match,
    syntax_valid,
)
from codila_engine.eval.report import README_MARKERS, pareto_front, readme_block
from codila_engine.eval.setups import BENCHMARKS, HUMANEVAL, HUMANEVAL_MULTI, setups

pytestmark = pytest.mark.usefixtures("sandbox_or_unsafe")

torch.set_num_threads(1)

SOURCES = {
    "shapes.py": '''"""Shapes.

A docstring line that is long enough.
"""
import math


class Circle:
    """A circle."""

    def __init__(self, radius):
        self.radius = radius  # metres

    @property
    def area(self):
        return math.pi * self.radius ** 2
''',
    "loops.py": """def total(values):
    result = 0
    for value in values:
        if value > 0: result += value
        else:
            result -= 1
    return result


def names(items):
    out = [item.name
           for item in items]
    # a comment line of some length
    return sorted(out)
""",
    "crlf.py": "def scale(xs, k):\r\n    ys = [x * k for x in xs]\r\n    ys.reverse()\r\n    return ys\r\n",
}


def docs(sources: dict[str, str]) -> list:
    return [SimpleNamespace(source=name, text=text) for name, text in sources.items()]


def test_heldout_tasks_cut_whole_lines_and_rebuild_the_file():
    tasks = build_tasks(docs(SOURCES), per_kind=3, seed=0)
    assert sorted(tasks) == ["multi-line", "single-line"]
    assert all(len(ts) == 3 for ts in tasks.values())  # one per file and kind
    assert tasks == build_tasks(docs(SOURCES), per_kind=3, seed=0)  # seeded: the same every run
    for kind, ts in tasks.items():
        assert len({t.task_id.split(":")[0] for t in ts}) == 3
        for t in ts:
            text = SOURCES[t.task_id.split(":")[0]].replace("\r\n", "\n")
            assert t.kind == kind and t.program(t.middle) == text
            assert t.prefix == t.before and t.suffix == t.after  # short files: nothing trimmed
            assert t.middle == t.middle.strip() and not t.middle.startswith("#")
            assert t.after.startswith("\n") or not t.after  # the span ends at a line end
            lines = t.middle.split("\n")
            assert len(lines) == 1 if kind == "single-line" else 2 <= len(lines) <= 5
            assert exact_match(t.middle, t.middle) and syntax_valid(t, t.middle)
            assert not syntax_valid(t, "x = = (") and not syntax_valid(t, ")" + t.middle)  # garbage: 0
            assert not exact_match("pass", t.middle)


def test_span_rules_skip_docstrings_continuations_and_shared_lines():
    text = SOURCES["loops.py"] + SOURCES["shapes.py"]
    singles = {cut(text, s, "single-line", "f").middle for s in candidate_spans(text)["single-line"]}
    multis = {cut(text, s, "multi-line", "f").middle for s in candidate_spans(text)["multi-line"]}
    assert "return sorted(out)" in singles and "def __init__(self, radius):" in singles
    assert "self.radius = radius  # metres" in singles and "@property" in singles
    assert not any("docstring line" in s or s.startswith(("out = [", "for item in", "#")) for s in singles)
    assert (
        "result = 0\n    for value in values:\n        if value > 0: result += value\n        else:\n"
        "            result -= 1" in multis
    )  # 5 lines
    assert not any(m.startswith("result = 0") and m.endswith("return result") for m in multis)  # 6: too long
    assert "@property\n    def area(self):\n        return math.pi * self.radius ** 2" in multis
    assert (
        "out = [item.name\n           for item in items]\n    # a comment line of some length\n"
        "    return sorted(out)" in multis
    )
    assert not any(m.startswith("result += value") for m in multis)  # `if x: y` shares the header's line
    assert candidate_spans("def broken(:\n    pass\n") == {"single-line": [], "multi-line": []}


def test_long_files_are_trimmed_at_line_boundaries():
    body = "".join(f"    value_{i} = compute({i}, {i + 1})\n" for i in range(200))
    text = f"def big():\n{body}    return value_0\n"
    task = cut(text, candidate_spans(text)["single-line"][100], "single-line", "big.py")
    assert task.middle == "value_99 = compute(99, 100)"
    assert PREFIX_CHARS - 40 < len(task.prefix) <= PREFIX_CHARS and SUFFIX_CHARS - 40 < len(task.suffix) <= SUFFIX_CHARS
    assert task.before.endswith(task.prefix) and task.before[-len(task.prefix) - 1] == "\n"  # from a line start
    assert task.prefix.endswith("\n    ")  # ... up to the span's indentation
    assert task.after.startswith(task.suffix) and task.suffix.endswith("\n")  # to a line end


def test_exact_match_ignores_trailing_space_and_blank_lines_only():
    truth = "if x:\n        y = 1"
    assert exact_match("\nif x:   \n        y = 1\n\n", truth)
    assert not exact_match("if x:\n    y = 1", truth) and not exact_match("if  x:\n        y = 1", truth)


def test_configurations_and_their_decoding_options():
    plan = setups()  # issue 11's rows
    assert [s.name for s in plan] == [
        "FIM (AR left to right)",
        "DLM K=1",
        "DLM K=4",
        "CoDiLA B=2 static soft",
        "CoDiLA B=4 static soft",
        "CoDiLA B=8 static soft",
        "CoDiLA B=4 static top-1",
        "CoDiLA B=4 dynamic τ=0.3",
        "CoDiLA B=4 dynamic τ=1",
        "CoDiLA B=4 dynamic τ=2",
    ]
    k1 = plan[1]
    assert (k1.cfg.decoder, k1.cfg.k, k1.cfg.block_size) == ("dlm", 1, 1)
    by = {s.name: s.cfg for s in plan}
    assert by["DLM K=4"].k == 4 and by["CoDiLA B=4 static top-1"].conditioning == "top1"
    assert by["CoDiLA B=8 static soft"].block_size == 8 and by["CoDiLA B=8 static soft"].conditioning == "soft"
    assert (by["CoDiLA B=4 dynamic τ=2"].mode, by["CoDiLA B=4 dynamic τ=2"].threshold) == ("dynamic", 2.0)
    assert [s.name for s in setups([4], [0.2], ["dlm-kb", "dynamic"])] == ["DLM K=4", "CoDiLA B=4 dynamic τ=0.2"]
    assert setups([2], families=["dream", "dlm-kb"])[0].family == "dream" and setups([2, 8])[2].name == "DLM K=2"
    with pytest.raises(ValueError, match="unknown configuration"):
        setups(families=["static"])


def test_claims_are_judged_from_the_numbers():
    plan = setups([4], [0.1, 0.5])

    def m(em: float, valid: float, ipt: float) -> dict:
        return {"n": 10, "exact_match": em, "syntax_valid": valid, "pass_at_1": None, "iterations_per_token": ipt}

    res = {
        "DLM K=1": m(0.5, 0.9, 1.0),
        "DLM K=4": m(0.2, 0.7, 0.25),
        "CoDiLA B=4 static soft": m(0.4, 0.7, 0.25),
        "CoDiLA B=4 static top-1": m(0.45, 0.8, 0.25),
        "CoDiLA B=4 dynamic τ=0.1": m(0.5, 0.9, 0.6),
        "CoDiLA B=4 dynamic τ=0.5": m(0.49, 0.9, 0.4),
    }
    found = {c["claim"]: c for c in claims({"held-out single-line": res}, plan)}
    beats = found["CoDiLA static soft beats DLM K=4 (equal parallelism)"]
    assert beats["holds"] and "exact match 0.400 vs 0.200: holds; syntax-valid 0.700 vs 0.700: tie" in beats["text"]
    assert not found["soft beats top-1 (B=4)"]["holds"]
    dynamic = found["dynamic close to DLM K=1 with >= 2x fewer iterations (B=4)"]
    assert dynamic["holds"] and "(CoDiLA B=4 dynamic τ=0.5)" in dynamic["text"] and "2.50x fewer" in dynamic["text"]
    res["CoDiLA B=4 dynamic τ=0.5"] = m(0.4, 0.9, 0.4)  # fast enough but not close
    (dynamic,) = [c for c in claims({"held-out single-line": res}, plan) if c["claim"].startswith("dynamic")]
    assert not dynamic["holds"] and "-0.100" in dynamic["text"]
    assert not any(c.startswith(("goal", "default")) for c in found)  # no FIM row, nothing to judge them by
    res["DLM K=1"] = m(0.0, 0.3, 1.0)  # nothing to come close to
    (dynamic,) = [c for c in claims({"held-out single-line": res}, plan) if c["claim"].startswith("dynamic")]
    assert dynamic["holds"] is None and dynamic["text"].endswith("untestable (DLM K=1 scores 0)")


def test_goal_and_default_decoder_rule_are_judged_against_fim():
    plan = setups([4], [0.3], ["fim", "static-soft"])

    def m(p: float, tps: float) -> dict:
        return {"n": 164, "pass_at_1": p, "syntax_valid": 0.9, "exact_match": 0.1, "tokens_per_s": tps}

    def judged(soft: dict) -> dict:
        res = {"FIM (AR left to right)": m(0.55, 7.0), "CoDiLA B=4 static soft": soft}
        return {c["claim"].split(":")[0]: c for c in claims({HUMANEVAL: res}, plan)}

    ok = judged(m(0.51, 10.5))  # 4 points below at exactly 1.5x
    assert ok["goal"]["holds"] and "(-0.040), 1.50x" in ok["goal"]["text"]
    assert ok["default-decoder rule"]["holds"] and "default becomes codila" in ok["default-decoder rule"]["text"]
    slow = judged(m(0.51, 10.4))
    assert not slow["goal"]["holds"] and slow["default-decoder rule"]["holds"]
    weak = judged(m(0.27, 50.0))  # fast, but under half of FIM's 0.55
    assert not weak["goal"]["holds"] and not weak["default-decoder rule"]["holds"]
    assert "default stays fim" in weak["default-decoder rule"]["text"]


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(7.0, 0.55), (10.0, 0.3), (12.0, 0.35), (5.0, 0.5), (20.0, 0.1), (20.0, 0.05)]
    assert pareto_front(points) == [(7.0, 0.55), (12.0, 0.35), (20.0, 0.1)]


def test_readme_block_is_replaced_between_its_markers():
    table = {
        "date": "2026-12-01T00:00:00",
        "device": "cpu",
        "models": {"dlm": "d", "ar": "a", "fim_ar": "f"},
        "settings": {"temperature": 0.0, "seed": 0},
        "command": "codila eval table",
        "results": {},
        "tasks": {},
        "configurations": [],
        "claims": [],
    }
    begin, end = README_MARKERS
    text = f"# R\n\n{begin}\nold table\n{end}\n\nafter\n"
    new = readme_block(text, table)
    assert "old table" not in new and new.endswith(f"{end}\n\nafter\n") and "`codila eval table`" in new
    assert readme_block(new, table) == new
    with pytest.raises(ValueError, match="no results block"):
        readme_block("# R\n", table)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Enough small files that a 0.7 held-out fraction leaves some for training and holds some out."""
    root = tmp_path_factory.mktemp("data")
    for i in range(12):
        (root / f"mod_{i}.py").write_text(
            f"def f_{i}(x):\n    y = x + {i}\n    return y * {i + 1}\n\n\nvalue_{i} = f_{i}({i})\n"
        )
    return root


def without_default_model(monkeypatch):
    """No shipped pair, and the default model's wheels not installed (a part that does not exist)."""
    import codila_engine.prepare.default_model as dm
    from codila_engine.prepare import source

    missing = source.GgufSource("missing", (source.Part("codila-no-such-part", "1.0", "x.bin"),), "0" * 64, 1, 1)
    real = dm.default_model_folder
    monkeypatch.setattr("codila_engine.prepare.folders.shipped_models", lambda: None)
    monkeypatch.setattr(dm, "default_model_folder", lambda *a, **k: real(*a, spec=missing, **k))


def _run(tiny_pair, out: Path, *extra: str) -> int:
    return main(
        [
            "eval",
            "table",
            "--dlm",
            str(tiny_pair[0]),
            "--ar",
            str(tiny_pair[1]),
            "--device",
            "cpu",
            "--block-sizes",
            "2",
            "--thresholds",
            "0.3",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def test_table_on_held_out_files(tiny_pair, data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "table"
    rc = _run(
        tiny_pair,
        out,
        "--data-dir",
        str(data_dir),
        "--held-out-fraction",
        "0.7",
        "--held-out-tasks",
        "2",
        "--humaneval-limit",
        "0",
        "--humaneval-multi-limit",
        "0",
    )
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    table = json.loads((out / "results.json").read_text())
    names = [
        "DLM K=1",
        "DLM K=2",
        "CoDiLA B=2 static soft",
        "CoDiLA B=2 static top-1",
        "CoDiLA B=2 dynamic τ=0.3",
    ]  # no FIM row: the tiny AR has no FIM tokens
    assert [c["name"] for c in table["configurations"]] == names
    assert list(table["results"]) == list(BENCHMARKS[:2]) and table["tasks"] == dict.fromkeys(BENCHMARKS[:2], 2)
    stored = [json.loads(f.read_text()) for f in sorted((out / "rows").glob("held-out-*/*.json"))]
    rows = [r for s in stored for r in s["rows"]]
    assert len(stored) == 5 * 2 and len(rows) == 5 * 4 and {r["config"] for r in rows} == set(names)
    for bench, res in table["results"].items():
        for name in names:
            r = res[name]
            assert r["n"] == 2 and 0 <= r["exact_match"] <= 1 and 0 <= r["syntax_valid"] <= 1
            assert r["tokens_per_s"] > 0 and r["pass_at_1"] is None and r["first_draft_s"] > 0
        assert res["DLM K=1"]["iterations_per_token"] >= 1  # one token per iteration, EOS dropped
        assert res["DLM K=2"]["iterations_per_token"] >= 0.5
    ids = {r["masks"] for r in rows if r["config"] == "DLM K=1"}
    assert all(m >= 2 for m in ids)  # 1.25 x at least two tokens, rounded up
    assert table["tasks"] and table["claims"] and all(c["text"] in printed.out for c in table["claims"])
    md = (out / "table.md").read_text()
    assert all(f"| {n} |" in md for n in names) and "**held-out multi-line** (2 tasks)" in md
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # --resume measures nothing that is stored with the same settings, and again what changed
    import codila_engine.eval.table as table_module

    def no_decoding(*args):
        raise AssertionError("a stored row was measured again")

    monkeypatch.setattr(table_module, "heldout_row", no_decoding)
    again = ("--data-dir", str(data_dir), "--held-out-fraction", "0.7", "--held-out-tasks", "2", "--humaneval-limit")
    assert _run(tiny_pair, out, *again, "0", "--humaneval-multi-limit", "0", "--resume") == 0
    assert json.loads((out / "results.json").read_text())["results"] == table["results"]
    with pytest.raises(AssertionError, match="measured again"):
        _run(tiny_pair, out, *again, "0", "--humaneval-multi-limit", "0", "--resume", "--seed", "1")
    # --stored-only measures nothing: a row not stored is listed as not measured
    more = ("--humaneval-multi-limit", "0", "--thresholds", "0.3", "0.6", "--stored-only")
    assert _run(tiny_pair, out, *again, "0", *more) == 0
    partial = json.loads((out / "results.json").read_text())
    assert partial["results"] == table["results"]
    assert partial["not_measured"] == dict.fromkeys(BENCHMARKS[:2], ["CoDiLA B=2 dynamic τ=0.6"])
    assert "Not measured yet: CoDiLA B=2 dynamic τ=0.6." in (out / "table.md").read_text()


def test_a_stopped_held_out_row_goes_on_from_its_last_task(tiny_pair, data_dir, tmp_path, monkeypatch):
    import codila_engine.eval.table as table_module

    class Stopped(Exception):
        pass

    real, calls = table_module.heldout_row, []

    def counted(engine, setup, task, stop_at=0):
        calls.append((setup.name, task.task_id))
        if len(calls) == stop_at:
            raise Stopped  # as if the session ended while this task decoded
        return real(engine, setup, task)

    out, held_out = tmp_path / "table", ("--data-dir", str(data_dir), "--held-out-fraction", "0.7")
    only = (*held_out, "--held-out-tasks", "2", "--humaneval-limit", "0", "--humaneval-multi-limit", "0")
    monkeypatch.setattr(table_module, "heldout_row", lambda *a: counted(*a, stop_at=4))
    with pytest.raises(Stopped):
        _run(tiny_pair, out, *only, "--configs", "dlm-k1", "dlm-kb")
    first = calls[:3]  # the first row whole, the second row's first task
    logs = sorted((out / "held-out").glob("*/*/tasks.jsonl"))
    assert [len(p.read_text().splitlines()) for p in logs] == [2, 1]
    calls.clear()
    monkeypatch.setattr(table_module, "heldout_row", counted)
    assert _run(tiny_pair, out, *only, "--configs", "dlm-k1", "dlm-kb", "--resume") == 0
    assert calls[0][0] == first[-1][0] and calls[0][1] != first[-1][1]  # row 2's second task
    assert len(calls) == 2 * 2 * 2 - 3  # two benchmarks x two rows x two tasks, less the three done
    resumed = json.loads((out / "results.json").read_text())["results"]
    calls.clear()
    assert _run(tiny_pair, tmp_path / "whole", *only, "--configs", "dlm-k1", "dlm-kb") == 0
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())["results"]
    same = ("n", "syntax_valid", "exact_match", "iterations_per_token", "text_tokens")  # not the timings
    for bench in whole:
        for name, row in whole[bench].items():
            assert {k: row[k] for k in same} == {k: resumed[bench][name][k] for k in same}


def test_table_on_humaneval_through_the_server(tiny_pair, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "table"
    rc = _run(
        tiny_pair,
        out,
        "--held-out-tasks",
        "0",
        "--humaneval-limit",
        "2",
        "--humaneval-max-tokens",
        "6",
        "--humaneval-multi-limit",
        "1",
        "--humaneval-multi-max-tokens",
        "4",
        "--configs",
        "dlm-kb",
        "static-soft",
    )
    assert rc == 0, capsys.readouterr().err
    table = json.loads((out / "results.json").read_text())
    assert table["tasks"] == {HUMANEVAL: 2, HUMANEVAL_MULTI: 1} and list(table["results"]) == [
        HUMANEVAL,
        HUMANEVAL_MULTI,
    ]
    for name in ("DLM K=2", "CoDiLA B=2 static soft"):
        r = table["results"][HUMANEVAL][name]
        assert r["n"] == 2 and r["request_errors"] == 0 and 0 <= r["pass_at_1"] <= r["syntax_valid"] <= 1
        assert r["iterations_per_token"] >= 0.5 and r["tokens_per_s"] > 0  # 3 iterations, at most 6 tokens
    assert table["results"][HUMANEVAL_MULTI]["DLM K=2"]["n"] == 1
    summaries = [
        json.loads(f.read_text()) for f in sorted((out / "humaneval" / "humaneval-single-line").glob("*/summary.json"))
    ]
    assert [(s["settings"]["initialization_options"]["decoder"], s["n"]) for s in summaries] == [
        ("codila", 2),
        ("dlm", 2),
    ]
    assert all(
        s["settings"]["max_tokens"] == 6 and s["settings"]["initialization_options"]["blockSize"] == 2
        for s in summaries
    )
    assert "pass@1 |" in (out / "table.md").read_text() and (out / "pareto.png").is_file()


def test_table_errors_name_the_problem(tiny_pair, tmp_path, capsys, monkeypatch):
    assert _run(tiny_pair, tmp_path / "a", "--humaneval-limit", "0") == 2
    assert "pass --held-out-dir DIR" in capsys.readouterr().err
    none = ("--held-out-tasks", "0", "--humaneval-limit", "0", "--humaneval-multi-limit", "0")
    assert _run(tiny_pair, tmp_path / "b", *none) == 2
    assert "nothing to measure" in capsys.readouterr().err
    assert _run(tiny_pair, tmp_path / "c", "--data-dir", str(tmp_path / "missing"), "--humaneval-limit", "0") == 2
    assert "does not exist" in capsys.readouterr().err
    without_default_model(monkeypatch)
    assert main(["eval", "table", "--held-out-tasks", "0", "--out", str(tmp_path / "d")]) == 2
    assert "pip install 'codila[model]'" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcd")  # nothing written before the inputs check out
