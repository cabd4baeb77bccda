"""`codila bench` on tiny shapes (CPU): the same code that measures the paper-sized models."""

import argparse
import json

from codila_engine.bench.paper import add_bench_subcommand, agreement


def _args(tmp_path, **kw):
    parser = argparse.ArgumentParser()
    add_bench_subcommand(parser.add_subparsers())
    argv = [
        "bench",
        "--prompt",
        "24",
        "--span",
        "24",
        "--block-sizes",
        "2",
        "4",
        "--dual-cache",
        "8",
        "--device",
        "cpu",
        "--init-std",
        "0.2",
        "--json",
        str(tmp_path / "bench.json"),
    ]
    return parser.parse_args(argv + [x for k, v in kw.items() for x in (f"--{k}", str(v))])


def test_bench_reports_both_paths(tmp_path, capsys):
    args = _args(tmp_path)
    assert args.func(args) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["shapes"] == "tiny"  # the default on a machine without CUDA
    assert [r["block_size"] for r in report["runs"]] == [2, 4]
    assert report["dlm_floor_ms"] > 0 and report["dlm_parameters"] > 0
    for run in report["runs"]:
        assert run["fast_agreement"] == 1.0  # float32, peaked random weights: no near-ties to flip
        assert 0.0 <= run["approx_agreement"] <= 1.0
        for path in ("plain", "fast", "approx"):
            r = run[path]
            assert r["tokens"] == 24 and r["iterations"] == 24 // run["block_size"]
            assert r["tokens_per_s"] > 0 and r["first_block_ms"] > 0
            assert set(r["ms_per_iteration"]) == {"dlm", "cond", "ar", "select"}
    out = capsys.readouterr().out
    assert "B = 4: token agreement fast/plain 1.0000, approx/plain" in out and "DLM compute floor" in out
    assert "--shapes tiny (the default on cpu" in out


def test_bench_can_stop_early(tmp_path):
    args = _args(tmp_path, **{"max-iterations": 3})
    args.func(args)
    run = json.loads((tmp_path / "bench.json").read_text())["runs"][0]
    assert run["plain"]["iterations"] == 3 and run["plain"]["tokens"] == 6


def test_agreement_counts_only_positions_both_committed():
    assert agreement([1, 2, 9, 4], [1, 3, 5, 9], mask_id=9) == 0.5
    assert agreement([9, 9], [9, 9], mask_id=9) == 0.0


def test_bench_model_reports_load_time_and_request_speeds(tmp_path):
    import json

    from codila_engine.cli import main
    from tiny_models import build_fim_model

    folder = build_fim_model(tmp_path)
    out = tmp_path / "bench.json"
    assert (
        main(["bench", "model", "--ar", str(folder), "--repeats", "1", "--dtypes", "float32", "--json", str(out)]) == 0
    )
    report = json.loads(out.read_text())["float32"]
    assert report["decoder"] == "fim" and report["load_s"] > 0
    assert set(report["requests"]) == {"single-line infill (16)", "completion (64)"}
    for row in report["requests"].values():
        assert 0 < row["first_draft_s"] <= row["wall_s"] and 1 <= row["tokens"]
    assert "\n" not in report["requests"]["single-line infill (16)"]["text"]
