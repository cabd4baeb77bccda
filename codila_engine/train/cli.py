"""`codila train ...`: the tokenizer, the DLM and the AR, from Python sources or instruction data.

Call add_train_subcommands(subparsers) from the main CLI; each subcommand sets `func` (its run_*
in train/commands.py), which takes the parsed arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codila_engine.train.commands import (
    run_ar_adapt,
    run_ar_codila,
    run_ar_pretrain,
    run_dlm,
    run_dlm_adapt,
    run_dlm_curve,
    run_dlm_probe,
    run_export,
    run_tokenizer,
)
from codila_engine.train.models import ModelSize


def _data_args(p: argparse.ArgumentParser, windows: bool = True) -> None:
    """The corpus options; `windows` for the commands that cut it into training windows."""
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", action="append", default=[], metavar="DIR", help="directory of .py files (repeatable)")
    g.add_argument(
        "--data-jsonl",
        action="append",
        default=[],
        metavar="FILE",
        help="JSONL of instruction/response pairs or chat messages (repeatable)",
    )
    g.add_argument(
        "--humaneval-dir",
        type=Path,
        default=None,
        help="HumanEval infilling files to keep out of training (default: the packaged copy)",
    )
    g.add_argument(
        "--held-out-fraction", type=float, default=0.02, help="fraction of documents held out for validation, 0-1"
    )
    g.add_argument(
        "--max-documents", type=int, default=None, help="use a fixed sample of this many documents (default: all)"
    )
    if windows:
        g.add_argument(
            "--pack",
            action="store_true",
            help="train on back-to-back windows of the concatenated files instead of one padded "
            "window per file start (code directories only)",
        )
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _adapt_args(p: argparse.ArgumentParser, command: str, shipped: str) -> None:
    """What dlm-adapt and ar-adapt share: data with held-out packages, the loop, base, warm start, LoRA."""
    _data_args(p)
    p.add_argument(
        "--held-out-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="whole packages for validation and the learning curve (repeatable; never trained on)",
    )
    _loop_args(p)
    p.add_argument("--base", type=Path, default=None, help="base model folder (default: the default model)")
    p.add_argument(
        "--init-adapter",
        type=Path,
        default=None,
        help=f"warm start from a {command} checkpoint, e.g. {shipped} (default: new adapters)",
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="base weights and compute (default: auto, bfloat16 where the CPU is fast at it)",
    )
    p.add_argument("--rank", type=int, default=16, help="LoRA rank on every linear layer (default: 16)")


def _span_tokens_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--span-tokens",
        type=int,
        nargs=2,
        metavar=("LO", "HI"),
        default=None,
        help="span-masked sequences mask LO-HI tokens in all, log-uniform (default: a fraction t ~ U(0, 1) "
        "of the sequence, as random masks)",
    )


def _codila_args(p: argparse.ArgumentParser) -> None:
    """The CoDiLA objective's options (ar-codila, ar-adapt)."""
    p.add_argument(
        "--block-size",
        type=int,
        nargs="+",
        default=[2, 4, 8],
        help="block sizes B in tokens; each step draws one, so one AR serves all of them",
    )
    p.add_argument(
        "--conditioning",
        choices=("soft", "top1"),
        default="soft",
        help="soft: marginal x AR embeddings; top1: the DLM's argmax",
    )


def _model_args(p: argparse.ArgumentParser, defaults: ModelSize) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="tokenizer folder (default: the --init folder, or <out>/last on --resume)",
    )
    g.add_argument("--init", type=Path, default=None, help="start from this model folder instead of a new model")
    for name, help_ in [
        ("hidden", "hidden size, in features"),
        ("layers", "transformer layers"),
        ("heads", "attention heads"),
        ("kv_heads", "key/value heads"),
        ("intermediate", "MLP size, in features"),
        ("max_positions", "longest sequence the model supports, in tokens"),
    ]:
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name), help=help_)


def _loop_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--out", type=Path, required=True, help="output folder (best/, last/, log.jsonl)")
    g.add_argument("--steps", type=int, default=2000, help="optimizer steps to train to")
    g.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--seq-len", type=int, default=512, help="tokens per training sequence")
    g.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (AdamW, cosine decay)")
    g.add_argument("--warmup-ratio", type=float, default=0.03, help="fraction of --steps spent warming up, 0-1")
    g.add_argument("--clip-norm", type=float, default=7.0, help="gradient clipping, max global L2 norm")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay, per step")
    g.add_argument("--val-every", type=int, default=200, help="validate and checkpoint every N steps")
    g.add_argument("--val-batches", type=int, default=8, help="held-out batches per validation")
    g.add_argument("--resume", action="store_true", help="continue from <out>/last")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto")
    g.add_argument("--seed", type=int, default=0, help="seed of data order and noise")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def add_train_subcommands(subparsers) -> None:
    train = subparsers.add_parser("train", help="train the tokenizer, the DLM or the AR")
    sub = train.add_subparsers(dest="train_command", required=True, metavar="WHAT")

    tok = sub.add_parser("tokenizer", help="byte-level BPE on Python sources")
    _data_args(tok, windows=False)
    tok.add_argument("--out", type=Path, required=True, help="folder for tokenizer.json and its configs")
    tok.add_argument("--vocab-size", type=int, default=8192, help="tokens in the vocabulary")
    tok.add_argument("--max-bytes", type=int, default=100_000_000, help="train on at most this much text, in bytes")
    tok.set_defaults(func=run_tokenizer)

    dlm = sub.add_parser("dlm", help="masked-diffusion pretraining of a Dream-format DLM")
    _data_args(dlm)
    _model_args(dlm, ModelSize(layers=6))
    _loop_args(dlm)
    dlm.add_argument("--span-fraction", type=float, default=0.3, help="fraction of sequences masked as spans, 0-1")
    _span_tokens_arg(dlm)
    dlm.add_argument(
        "--pad-fraction",
        type=float,
        default=0.2,
        help="fraction of sequences masked as a span with padding inserted (variable-length infilling), 0-1",
    )
    dlm.add_argument(
        "--objective",
        choices=("diffusion", "causal"),
        default="diffusion",
        help="causal: next-token training of the same model with causal attention, the AR start "
        "Dream adapts from (then run again with --init and the diffusion objective)",
    )
    dlm.set_defaults(func=run_dlm)

    ad = sub.add_parser(
        "dlm-adapt",
        help="adapt the default model (Qwen2.5-Coder-0.5B) into a Dream-format DLM "
        "with LoRA; checkpoints hold the adapter and the mask vector",
    )
    _adapt_args(ad, "dlm-adapt", "codila_engine/assets/qwen2.5-coder-0.5b-dlm-adapter")
    ad.add_argument("--mask-lr", type=float, default=1e-3, help="learning rate of the mask vector (default: 1e-3)")
    ad.add_argument(
        "--span-fraction", type=float, default=0.4, help="fraction of sequences masked as spans, 0-1 (default: 0.4)"
    )
    _span_tokens_arg(ad)
    ad.add_argument(
        "--pad-fraction",
        type=float,
        default=0.1,
        help="fraction of sequences masked as a padded span, 0-1 (default: 0.1)",
    )
    ad.add_argument(
        "--distill",
        type=float,
        default=0.0,
        help="weight 0-1 of the base's own next-token predictions (adapters off, causal) as soft targets "
        "of each masked token, against 1 - weight for the true token (default: 0, no teacher)",
    )
    ad.add_argument(
        "--curve-windows",
        type=int,
        default=10,
        help="held-out windows (of --seq-len tokens) for top-1 at each validation",
    )
    ad.set_defaults(
        func=run_dlm_adapt,
        batch_size=1,
        seq_len=256,
        lr=2e-4,
        clip_norm=1.0,
        val_every=100,
        held_out_fraction=0.0,
        init=None,
    )  # init: _setup's, for the tokenizer; --init-adapter is ours

    aa = sub.add_parser(
        "ar-adapt",
        help="finetune the default model into CoDiLA's local AR on the default DLM's "
        "soft tokens (LoRA + <think> rows); checkpoints hold the adapter and rows",
    )
    _adapt_args(aa, "ar-adapt", "codila_engine/assets/qwen2.5-coder-0.5b-ar-adapter")
    aa.add_argument(
        "--dlm",
        type=Path,
        default=None,
        help="the frozen Dream-format DLM folder (default: the default DLM, prepared on first use)",
    )
    aa.add_argument("--rows-lr", type=float, default=1e-3, help="learning rate of the two think rows (default: 1e-3)")
    _codila_args(aa)
    aa.set_defaults(
        func=run_ar_adapt,
        batch_size=2,
        seq_len=256,
        lr=2e-4,
        clip_norm=1.0,
        val_every=100,
        held_out_fraction=0.0,
        init=None,
    )

    cu = sub.add_parser("dlm-curve", help="plot a dlm-adapt run's learning curve (masked top-1 on held-out files)")
    cu.add_argument("--run", type=Path, required=True, help="the dlm-adapt --out folder")
    cu.add_argument("--out", type=Path, required=True, help="PNG to write")
    cu.add_argument(
        "--tokens-per-step", type=int, default=256, help="tokens per step: batch x sequence length (default: 256)"
    )
    cu.set_defaults(func=run_dlm_curve)

    pr = sub.add_parser(
        "dlm-probe",
        help="masked top-1 of dlm-adapt checkpoints on more held-out windows than a run's curve uses "
        "(to compare checkpoints and training ideas)",
    )
    pr.add_argument("--run", type=Path, required=True, help="a dlm-adapt --out folder: its cached held-out windows")
    pr.add_argument("--adapter", type=Path, nargs="+", required=True, help="dlm-adapt checkpoints (e.g. RUN/last)")
    pr.add_argument("--windows", type=int, default=40, help="held-out windows per metric (default: 40)")
    pr.add_argument("--seq-len", type=int, default=256, help="window length in tokens, as trained (default: 256)")
    pr.add_argument(
        "--base",
        type=Path,
        default=None,
        help="base model folder (default: the checkpoint's own, else the default model)",
    )
    pr.add_argument(
        "--dtype", choices=("auto", "float32", "bfloat16"), default="auto", help="as trained (default: auto)"
    )
    pr.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    pr.add_argument(
        "--profile",
        action="store_true",
        help="also span-32 by position in the span: top-1 and mean entropy (nats) at each of the 32 positions",
    )
    pr.set_defaults(func=run_dlm_probe)

    for name, kind, what in (
        ("dlm-export", "dlm-adapt", "a Dream-format DLM"),
        ("ar-export", "ar-adapt", "a Qwen2 AR"),
    ):
        ex = sub.add_parser(name, help=f"merge a {kind} checkpoint into {what} model folder")
        ex.add_argument("--adapter", type=Path, required=True, help=f"a {kind} checkpoint (e.g. OUT/best)")
        ex.add_argument("--base", type=Path, default=None, help="base model folder (default: the default model)")
        ex.add_argument("--out", type=Path, required=True, help=f"the model folder to write ({what})")
        ex.set_defaults(func=run_export, kind=kind)

    ar = sub.add_parser("ar-pretrain", help="next-token pretraining of a Qwen3 AR")
    _data_args(ar)
    _model_args(ar, ModelSize())
    _loop_args(ar)
    ar.set_defaults(func=run_ar_pretrain)

    co = sub.add_parser("ar-codila", help="CoDiLA finetuning of the AR on a frozen DLM's soft tokens")
    _data_args(co)
    _loop_args(co)
    co.add_argument("--dlm", type=Path, required=True, help="the frozen Dream-format DLM folder")
    co.add_argument("--init", type=Path, default=None, help="the AR folder to finetune (e.g. from ar-pretrain)")
    co.add_argument("--tokenizer", type=Path, default=None, help="default: the --init folder")
    _codila_args(co)
    co.set_defaults(func=run_ar_codila)
