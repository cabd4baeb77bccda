"""The `codila` command: decode from the terminal, and the entry point of every subcommand."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import unicodedata
from pathlib import Path

from codila_engine.options import UsageError, add_decode_args, add_model_args, check_applies, decode_config


def load_engine(args: argparse.Namespace):
    """(engine, models): the models named by the flags, the shipped pair or the default model."""
    from codila_engine.models.checkpoint import default_device, default_dtype
    from codila_engine.prepare.folders import model_folders
    from codila_engine.engine import Engine

    models = model_folders(args.dlm, args.ar, args.decoder, cache_dir=args.cache_dir)
    device = torch_device(args.device) if args.device else default_device()
    dtype = default_dtype(device, args.dtype)
    print(f"loading {models.name} ({str(dtype).removeprefix('torch.')} on {device}) ...", file=sys.stderr)
    engine = Engine.load(
        models.dlm,
        models.ar,
        device=device,
        dtype=dtype,
        think_ids=tuple(args.think_ids) if args.think_ids else None,
        ar_backend=args.ar_backend,
    )
    return engine, models


def torch_device(name: str):
    """`--device` as a torch device that exists here; a one-line error otherwise."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UsageError(f"--device {name}: codila runs on cpu or cuda")
    return device


def screen_rows(text: str, columns: int) -> int:
    """Terminal rows `text` takes once wrapped at `columns` (wide characters take two cells)."""
    rows = 0
    for line in text.split("\n"):
        width = sum(
            2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in line
        )
        rows += max(1, -(-width // max(columns, 1)))
    return rows


class DraftView:
    """Redraw the growing draft in place on a terminal; one progress line per commit otherwise."""

    def __init__(self, stream=None, columns: int | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.columns = columns
        self.lines = 0

    def show(self, event) -> None:
        if not self.tty:
            print(
                f"iteration {event.iteration}: +{len(event.positions)} tokens ({event.source}) "
                f"at {event.elapsed_s:.2f}s",
                file=self.stream,
            )
            return
        if self.lines:
            self.stream.write(f"\x1b[{self.lines}F\x1b[J")
        text = f"[{event.iteration}] {event.draft}"
        self.stream.write(text + "\n")
        self.lines = screen_rows(text, self.columns or shutil.get_terminal_size().columns)
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self.lines:
            self.stream.write(f"\x1b[{self.lines}F\x1b[J")
            self.lines = 0


def run_decode(args: argparse.Namespace, prefix: str, suffix: str) -> int:
    cfg = decode_config(args)
    if cfg.decoder != "auto":
        check_applies(args, cfg)  # before the minutes a load can take
    engine, models = load_engine(args)
    cfg = engine.resolve(cfg)
    check_applies(args, cfg)
    cancel = threading.Event()
    decoding = engine.decode(prefix, suffix, cfg, cancel=cancel)
    view = DraftView()
    events = iter(decoding)
    interrupted = False
    try:
        for event in events:
            view.show(event)
    except KeyboardInterrupt:  # the decode ends where it is; its result has the real partial stats
        interrupted = True
        events.close()
    view.clear()
    result = decoding.result
    if args.json:
        print(
            json.dumps(
                {
                    "text": result.text,
                    "cancelled": result.cancelled,
                    "decoder": cfg.decoder,
                    "model": models.name,
                    "dtype": engine.runs_on["dtype"],
                    "stats": result.stats.as_dict(),
                }
            )
        )
    else:
        print(result.text)
        s = result.stats
        print(
            f"{cfg.decoder} decoder, {models.name}: {s.iterations} iterations, {s.text_tokens} tokens in "
            f"{s.wall_s:.2f}s ({s.tokens_per_s:.1f} tokens/s; "
            f"DLM {s.dlm_s:.2f}s, AR {s.ar_s:.2f}s, first block {s.first_commit_s or 0:.2f}s)"
            + (" [cancelled]" if result.cancelled else ""),
            file=sys.stderr,
        )
    return 130 if interrupted else 0


def read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.exists() or file.is_dir():  # pipes (<(...), /dev/stdin) are fine
        raise UsageError(f"{path} is not a file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); convert it, e.g. iconv -t UTF-8 {path}"
        ) from None


def cmd_generate(args: argparse.Namespace) -> int:
    if (args.prompt is None) == (args.prompt_file is None):
        raise SystemExit("codila generate: give exactly one of --prompt TEXT or --prompt-file PATH")
    prompt = args.prompt if args.prompt is not None else read_text(args.prompt_file)
    return run_decode(args, prompt, "")


def cmd_infill(args: argparse.Namespace) -> int:
    suffix = read_text(args.suffix_file)
    if not suffix:
        raise SystemExit("codila infill: the suffix is empty; use `codila generate` for plain completion")
    return run_decode(args, read_text(args.prefix_file), suffix)


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already states it (a switch's
    default is off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or isinstance(action.default, bool)
            or action.default in (None, argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)".strip()


def parsers(parser: argparse.ArgumentParser):
    """The parser and every subcommand's, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from parsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codila", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="complete a prompt")
    gen.add_argument("--prompt", help="the code to complete, as text (or --prompt-file)")
    gen.add_argument("--prompt-file", help="file with the prompt ('-' for stdin)")
    infill = sub.add_parser("infill", help="fill the middle between a prefix and a suffix")
    infill.add_argument("--prefix-file", required=True, help="file with the code before the span ('-' for stdin)")
    infill.add_argument("--suffix-file", required=True, help="file with the code after the span ('-' for stdin)")
    for p, fn in ((gen, cmd_generate), (infill, cmd_infill)):
        add_model_args(p)
        add_decode_args(p)
        p.add_argument("--json", action="store_true", help="print the text and stats as one JSON object")
        p.set_defaults(func=fn)
    from codila_engine.eval.cli import add_eval_subcommands  # here: eval.cli imports this module

    from codila_engine.train.cli import add_train_subcommands

    from codila_engine.bench.paper import add_bench_subcommand
    from codila_engine.prepare.default_model import add_models_subcommand
    from codila_engine.serve.cli import add_serve_subcommands

    add_eval_subcommands(sub)
    add_train_subcommands(sub)
    add_bench_subcommand(sub)
    add_models_subcommand(sub)
    add_serve_subcommands(sub)
    for each in parsers(parser):
        each.formatter_class = DefaultsFormatter
        for action in each._actions:  # argparse prints no help line at all for help=None
            if action.help is None and action.option_strings:
                action.help = DefaultsFormatter(each.prog)._get_help_string(action) or None
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a runtime failure (a damaged file), 2 a usage error (a flag, a path, a
    missing install), 130 Ctrl-C; every failure is one line on stderr."""
    from codila_engine.models.checkpoint import ModelFolderError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("codila: interrupted", file=sys.stderr)
        return 130
    except ModelFolderError as exc:
        print(f"codila: {exc}", file=sys.stderr)
        return 1 if getattr(exc, "damaged", False) else 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"codila: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
