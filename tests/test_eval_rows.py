"""Rows kept on disk (codila_engine/eval/rows.py): a stopped run goes on at its first task not done."""

from __future__ import annotations

import json

from codila_engine.eval.rows import RowStore, TaskLog, row_key

IDS = ["t/0", "t/1", "t/2", "t/3"]


def _write(log_path, key: str, rows: list[dict]) -> None:
    with TaskLog(log_path, key, IDS, resume=False) as log:
        for row in rows:
            log.add(row)


def test_task_log_resumes_after_the_last_whole_row(tmp_path):
    path = tmp_path / "run" / "tasks.jsonl"
    _write(path, "k1", [{"task_id": "t/0", "v": 0}, {"task_id": "t/1", "v": 1}])
    with open(path, "a") as f:
        f.write('{"task_id": "t/2", "v"')  # killed while writing the third row
    log = TaskLog(path, "k1", IDS, resume=True)
    assert [r["v"] for r in log.done] == [0, 1] and log.todo == 2
    with log:
        log.add({"task_id": "t/2", "v": 2})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["v"] for line in lines] == [0, 1, 2]  # the cut line is gone


def test_task_log_starts_again_when_anything_differs(tmp_path):
    path = tmp_path / "tasks.jsonl"
    _write(path, "k1", [{"task_id": "t/0"}, {"task_id": "t/1"}])
    assert len(TaskLog(path, "k1", IDS, resume=True).done) == 2
    assert TaskLog(path, "k1", IDS, resume=False).done == []  # no --resume: measured again
    assert TaskLog(path, "k2", IDS, resume=True).done == []  # other settings
    assert TaskLog(path, "k1", ["t/1", "t/0"], resume=True).done == []  # other tasks, or another order
    assert len(TaskLog(path, "k1", IDS[:1], resume=True).done) == 1  # a shorter run keeps its share
    (path.with_suffix(".key")).unlink()
    assert TaskLog(path, "k1", IDS, resume=True).done == []  # a log of unknown settings


def test_task_log_stops_at_the_first_row_not_kept(tmp_path):
    path = tmp_path / "tasks.jsonl"
    rows = [{"task_id": "t/0", "ok": True}, {"task_id": "t/1", "ok": False}, {"task_id": "t/2", "ok": True}]
    _write(path, "k", rows)
    log = TaskLog(path, "k", IDS, resume=True, keep=lambda row: row["ok"])
    assert log.done == rows[:1] and log.todo == 3


def test_row_store_returns_a_row_only_for_its_key(tmp_path):
    store, key = RowStore(tmp_path, resume=True), row_key(bench="b", decode={"block_size": 4})
    assert store.get("held-out single-line", "CoDiLA B=4 dynamic τ=0.3", key) is None
    store.put("held-out single-line", "CoDiLA B=4 dynamic τ=0.3", key, {"n": 2}, [{"a": 1}])
    assert store.get("held-out single-line", "CoDiLA B=4 dynamic τ=0.3", key) == {"n": 2}
    assert store.get("held-out single-line", "CoDiLA B=4 dynamic τ=0.3", row_key(bench="b")) is None
    assert RowStore(tmp_path, resume=False).get("held-out single-line", "CoDiLA B=4 dynamic τ=0.3", key) is None
    assert row_key(a=1, b=[2]) == row_key(b=[2], a=1) != row_key(a=1, b=[3])
