"""The `codila` command as a new user meets it: one line per mistake naming the flag and the
fix, exit codes 2 (usage), 1 (damaged files), 130 (Ctrl-C), and a live draft that redraws right."""

import io
import json

import pytest

from codila_engine.cli import DraftView, main, screen_rows


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture
def pair_args(tiny_pair):
    return ["--dlm", str(tiny_pair[0]), "--ar", str(tiny_pair[1]), "--device", "cpu", "--max-new-tokens", "8"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--tokens-per-step", "0", "--decoder", "dlm"],
            "--tokens-per-step: must be a whole number of tokens >= 1, got 0",
        ),
        (["--threshold", "0.5"], "--threshold applies to --mode dynamic of the codila decoder only"),
        (
            ["--threshold", "inf", "--mode", "dynamic"],
            "--threshold: must be a finite mean entropy >= 0 (nats), got inf",
        ),
        (
            ["--threshold", "nan", "--mode", "dynamic"],
            "--threshold: must be a finite mean entropy >= 0 (nats), got nan",
        ),
        (["--tokens-per-step", "2"], "--tokens-per-step applies to --decoder dlm only"),
        (["--scope", "0"], "--scope: must be a whole number of blocks >= 1, got 0"),
        (["--block-size", "-4"], "--block-size: must be a whole number of tokens >= 1, got -4"),
        (["--max-new-tokens", "0"], "--max-new-tokens: must be a whole number of tokens >= 1, got 0"),
        (
            ["--max-new-tokens", "1000000"],
            "--max-new-tokens: must be below 2048 tokens (the context kept around the span)",
        ),
        (["--temperature", "nan"], "--temperature: must be finite and >= 0 (0: greedy), got nan"),
        (["--device", "tpu"], "--device tpu: not a device name; use cpu, cuda or cuda:N"),
    ],
)
def test_bad_flags_get_one_line_naming_the_flag_and_exit_2(capsys, pair_args, flags, message):
    code, err = run(capsys, "generate", "--prompt", "x = ", *pair_args, *flags)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.startswith("codila:")]) == 1


def test_cuda_on_a_machine_without_it_names_the_fix(capsys, pair_args):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = run(capsys, "generate", "--prompt", "x", *pair_args[:-4], "--device", "cuda")
    assert code == 2 and "--device cuda: CUDA is not available on this machine" in err and "--device cpu" in err


def test_files_the_user_gives_are_named_in_errors(capsys, tmp_path, tiny_pair, pair_args):
    latin = tmp_path / "latin1.py"
    latin.write_bytes("s = 'café'\n".encode("latin-1"))
    code, err = run(capsys, "infill", "--prefix-file", str(latin), "--suffix-file", str(latin), *pair_args)
    assert code == 2 and f"{latin} is not UTF-8 text" in err and "iconv" in err
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code, err = run(capsys, "generate", "--prompt", "x", "--dlm", str(text), "--ar", str(tiny_pair[1]))
    assert code == 2 and f"DLM folder {text} is a file, not a folder" in err


def test_truncated_weights_are_a_runtime_error_with_the_fix(capsys, tmp_path, tiny_pair):
    import shutil

    ar = shutil.copytree(tiny_pair[1], tmp_path / "ar")
    weights = ar / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, err = run(capsys, "generate", "--prompt", "x", "--dlm", str(tiny_pair[0]), "--ar", str(ar), "--device", "cpu")
    assert code == 1 and "truncated or corrupted" in err and "Traceback" not in err


def test_ctrl_c_prints_the_real_partial_statistics_and_exits_130(capsys, monkeypatch, pair_args):
    import codila_engine.cli as cli

    shown = []

    def interrupt_after_two(self, event):
        shown.append(event)
        if len(shown) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.DraftView, "show", interrupt_after_two)
    code = main(
        ["generate", "--prompt", "x = ", *pair_args[:-2], "--max-new-tokens", "32", "--block-size", "4", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 130 and out["cancelled"]
    stats = out["stats"]
    assert stats["iterations"] == 2 and stats["tokens"] == 8 and stats["wall_s"] >= shown[-1].elapsed_s > 0
    assert stats["tokens_per_s"] < 1e4  # the old bug: wall time 0.00 s and ~42k tokens/s


def test_draft_redraw_counts_wrapped_and_wide_rows():
    assert screen_rows("abc", 80) == 1 and screen_rows("a" * 81, 80) == 2 and screen_rows("a\n\nb", 80) == 3
    assert screen_rows("数" * 41, 80) == 2  # 82 cells
    stream = io.StringIO()
    stream.isatty = lambda: True
    view = DraftView(stream, columns=10)

    class Event:
        iteration, draft = 1, "x" * 25  # "[1] " + 25 = 29 cells: 3 rows at 10 columns

    view.show(Event)
    Event.iteration = 2
    view.show(Event)
    assert view.lines == 3 and "\x1b[3F" in stream.getvalue()


def test_help_shows_defaults_and_units(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for text in (
        "(default: 4 tokens)",
        "(default: 0.3 nats)",
        "(default: 10 blocks)",
        "(default: 64 tokens)",
        "(default: auto)",
        "(default: 0.1)",
        "(default: 0 = exact)",
    ):
        assert text in help_text, text


def test_every_option_of_every_subcommand_shows_its_default(capsys):
    import argparse

    from codila_engine.cli import DefaultsFormatter, build_parser, parsers

    missing = []
    for parser in parsers(build_parser()):
        formatter = DefaultsFormatter(parser.prog)
        for action in parser._actions:
            if (
                action.option_strings
                and not isinstance(action.default, bool)
                and action.default not in (None, argparse.SUPPRESS)
                and "default" not in formatter._get_help_string(action)
            ):
                missing.append(f"{parser.prog} {action.option_strings[-1]}")
    assert missing == []
    with pytest.raises(SystemExit):
        main(["train", "dlm-adapt", "--help"])
    assert "(default: 256)" in " ".join(capsys.readouterr().out.split())  # --seq-len


# what a number's help may name as its unit (or say that it has none)
UNITS = (
    "token",
    "block",
    "nats",
    "second",
    "step",
    "iteration",
    "sequence",
    "window",
    "feature",
    "layer",
    "head",
    "byte",
    "thread",
    "task",
    "document",
    "run",
    "0-1",
    "(0, 1)",
    "unitless",
    "seed",
    "rank",
    "learning rate",
    "norm",
    "per ",
    "the k ",
    "id",
)


def test_every_option_that_takes_a_value_says_what_it_is_and_numbers_name_their_unit():
    from codila_engine.cli import build_parser, parsers

    vague = []
    for parser in parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            text = action.help or ""
            numeric = action.type in (int, float)
            if not text.split("(default")[0].strip() or (numeric and not any(unit in text for unit in UNITS)):
                vague.append(f"{parser.prog} {action.option_strings[-1]}: {action.help!r}")
    assert vague == []
