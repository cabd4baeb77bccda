"""Command-line options for the models and for decoding, shared by `codila` and its subcommands."""

from __future__ import annotations

import argparse

from codila_engine.config import CONDITIONINGS, DECODERS, DTYPES, MODES, DecodeConfig, OptionError


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dlm",
        help="Dream-format DLM folder (default: the pair installed in codila_engine/assets/, "
        "if any, else none: the default model is an AR)",
    )
    parser.add_argument(
        "--ar",
        help="Qwen3 or Qwen2 AR folder (default: the pair in codila_engine/assets/, if any, "
        "else the default model Qwen2.5-Coder-0.5B-Instruct, prepared on first use)",
    )
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        choices=("auto", *DTYPES),
        default=None,
        help="weights and compute dtype (default: auto = $CODILA_DTYPE if set, else bfloat16 on CUDA "
        "and on CPUs where it is measured faster, float32 otherwise)",
    )
    parser.add_argument(
        "--cache-dir",
        help="where the default model is prepared (default: $CODILA_CACHE_DIR, "
        "else $XDG_CACHE_HOME/codila, else ~/.cache/codila)",
    )
    parser.add_argument(
        "--think-ids",
        type=int,
        nargs=2,
        metavar=("OPEN", "CLOSE"),
        help="override the AR's <think> and </think> token ids (default: read from its tokenizer)",
    )


def add_decode_args(parser: argparse.ArgumentParser) -> None:
    """The decoding flags; every help text ends with its default (and unit)."""
    d = DecodeConfig()
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        default=d.decoder,
        help="codila, dlm (plain diffusion), fim (plain left-to-right FIM by the AR), or auto: "
        "codila for a DLM + AR pair, fim for an AR alone such as the default model "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--block-size",
        type=int,
        default=d.block_size,
        metavar="B",
        help="tokens per block (default: %(default)s tokens)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=d.mode,
        help="static: commit a whole block; dynamic: its longest confident prefix (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="TAU",
        help=f"dynamic mode only: mean entropy a prefix may have (default: {d.threshold} nats)",
    )
    parser.add_argument(
        "--scope", type=int, default=d.scope, help="candidate blocks per iteration (default: %(default)s blocks)"
    )
    parser.add_argument(
        "--conditioning",
        choices=CONDITIONINGS,
        default=d.conditioning,
        help="soft: marginal x AR embeddings; top1: the DLM's argmax (default: %(default)s)",
    )
    parser.add_argument(
        "--tokens-per-step",
        type=int,
        default=None,
        metavar="K",
        help="--decoder dlm only: tokens committed per iteration (default: the block size)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=d.max_new_tokens,
        metavar="N",
        help="the span length, rounded up to whole blocks (default: %(default)s tokens)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=d.temperature,
        help="sampling temperature, unitless, 0 = greedy (default: %(default)s)",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=d.top_p,
        help="nucleus sampling: probability mass kept, 0-1 (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="sampling seed (default: %(default)s)")
    parser.add_argument(
        "--fast", action="store_true", help="static-shape AR decode, one CUDA graph per iteration on GPU (default: off)"
    )
    parser.add_argument(
        "--dual-cache",
        type=int,
        default=d.dual_cache,
        metavar="N",
        help="approximate: reuse DLM keys/values away from the frontier, full forward every N "
        "iterations (default: %(default)s = exact)",
    )
    parser.add_argument(
        "--single-line", action="store_true", help="fim: the middle ends at the end of its first line (default: off)"
    )
    dream = parser.add_argument_group("--decoder dream (Dream's own sampler)")
    dream.add_argument(
        "--steps", type=int, default=None, help="DLM forwards (steps) for the span (default: one per masked token)"
    )
    dream.add_argument(
        "--eps", type=float, default=None, help=f"the schedule's last time, in (0, 1) (default: {d.eps})"
    )
    dream.add_argument(
        "--alg-temp",
        type=float,
        default=None,
        help=f"0: commit the most confident; > 0: draw positions by confidence (default: {d.alg_temp})",
    )
    dream.add_argument(
        "--top-k", type=int, default=None, help="keep the k likeliest tokens per position (default: off)"
    )


DREAM_FLAGS = ("steps", "eps", "alg_temp", "top_k")


class UsageError(ValueError):
    """A flag or input the user can fix: one line, exit code 2."""


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def decode_config(args: argparse.Namespace) -> DecodeConfig:
    """The flags as decoding options; an out-of-range value names its flag."""
    if args.tokens_per_step is not None and args.tokens_per_step < 1:
        raise UsageError(f"--tokens-per-step: must be a whole number of tokens >= 1, got {args.tokens_per_step}")
    for name in DREAM_FLAGS:
        if getattr(args, name) is not None and getattr(args, name) <= 0 and name != "alg_temp":
            raise UsageError(f"{flag(name)}: must be > 0, got {getattr(args, name)}")
    try:
        d = DecodeConfig()
        dream = {name: getattr(args, name) for name in DREAM_FLAGS if getattr(args, name) is not None}
        return DecodeConfig(
            decoder=args.decoder,
            block_size=args.block_size,
            mode=args.mode,
            threshold=d.threshold if args.threshold is None else args.threshold,
            scope=args.scope,
            conditioning=args.conditioning,
            tokens_per_step=args.tokens_per_step or 0,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            fast=args.fast,
            dual_cache=args.dual_cache,
            single_line=args.single_line,
            **dream,
        )
    except OptionError as exc:
        raise UsageError(f"{flag(exc.field)}: {exc.problem}") from None


def check_applies(args: argparse.Namespace, cfg: DecodeConfig) -> None:
    """Flags that mean nothing for the decoder and mode that will run are an error, not ignored."""
    if args.threshold is not None and not (cfg.decoder == "codila" and cfg.mode == "dynamic"):
        raise UsageError(
            f"--threshold applies to --mode dynamic of the codila decoder only "
            f"(this run: {cfg.decoder} decoder, {cfg.mode} mode)"
        )
    if args.tokens_per_step is not None and cfg.decoder != "dlm":
        raise UsageError(f"--tokens-per-step applies to --decoder dlm only (this run: the {cfg.decoder} decoder)")
    given = [flag(name) for name in DREAM_FLAGS if getattr(args, name) is not None]
    if given and cfg.decoder != "dream":
        raise UsageError(f"{', '.join(given)} apply to --decoder dream only (this run: the {cfg.decoder} decoder)")
