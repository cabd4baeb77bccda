"""`codila train ...`: the tokenizer, the DLM and the AR, from Python sources or instruction data.

Call add_train_subcommands(subparsers) from the main CLI; each subcommand sets `func`, which
takes the parsed arguments.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
    pr.add_argument("--base", type=Path, default=None, help="base model folder (default: the checkpoint's own)")
    pr.add_argument(
        "--dtype", choices=("auto", "float32", "bfloat16"), default="auto", help="as trained (default: auto)"
    )
    pr.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
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


def _corpus(args):
    from codila_engine.train.data import load_corpus

    corpus = load_corpus(
        args.data_dir,
        args.data_jsonl,
        humaneval_dir=args.humaneval_dir,
        held_out_fraction=args.held_out_fraction,
        max_documents=args.max_documents,
        progress=args.progress,
    )
    for line in corpus.report.lines():
        print(line)
    return corpus


def run_tokenizer(args) -> None:
    from codila_engine.train.tokenizer import save_tokenizer, train_tokenizer

    corpus = _corpus(args)
    texts, size = [], 0
    for doc in corpus.train:
        if size >= args.max_bytes:
            break
        texts.append(doc.text)
        size += len(doc.text.encode())
    started = time.perf_counter()
    tokenizer = train_tokenizer(texts, args.vocab_size, show_progress=args.progress)
    folder = save_tokenizer(tokenizer, args.out)
    sample = [d.text for d in corpus.held_out[:200]] or texts[:200]
    n_tokens = sum(len(ids) for ids in tokenizer(sample, add_special_tokens=False)["input_ids"])
    print(
        f"trained on {len(texts)} documents ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f}s; "
        f"{len(tokenizer)} tokens; {sum(len(s.encode()) for s in sample) / max(n_tokens, 1):.2f} bytes/token "
        f"on held-out files; saved to {folder}"
    )


def _setup(args):
    """Threads, seed, device and tokenizer shared by the model commands."""
    import torch
    from transformers.utils import logging as hf_logging

    from codila_engine.models.checkpoint import default_device
    from codila_engine.train.loop import LoopConfig
    from codila_engine.train.tokenizer import load_tokenizer

    hf_logging.disable_progress_bar()  # checkpoint writes would break up the training bar
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = default_device() if args.device == "auto" else torch.device(args.device)
    cfg = LoopConfig(
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_ratio=args.warmup_ratio,
        clip_norm=args.clip_norm,
        weight_decay=args.weight_decay,
        val_every=args.val_every,
        val_batches=args.val_batches,
        seed=args.seed,
        resume=args.resume,
        progress=args.progress,
    )
    source = args.tokenizer or args.init or (args.out / "last" if args.resume else None)
    if source is None:
        raise SystemExit("give --tokenizer (a folder from `codila train tokenizer`) or --init (a model folder)")
    size = None
    if hasattr(args, "hidden"):
        size = ModelSize(
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            kv_heads=args.kv_heads,
            intermediate=args.intermediate,
            max_positions=args.max_positions,
        )
    return cfg, device, load_tokenizer(source), size


def _data(args, tokenizer, corpus=None):
    """Train and held-out windows of `corpus` (default: the data options' corpus), packed with --pack."""
    from codila_engine.train.data import prepare_data

    corpus = corpus or _corpus(args)
    data = prepare_data(corpus, tokenizer, args.seq_len, cache_dir=args.out / "data", progress=args.progress)
    if args.pack:
        data.train, data.held_out = data.train.packed(), data.held_out.packed()
    held_out_from = f" from {', '.join(args.held_out_dir)}" if getattr(args, "held_out_dir", None) else ""
    print(
        f"sequences of {args.seq_len} tokens: {len(data.train)} train ({data.train.n_tokens} tokens), "
        f"{len(data.held_out)} held out ({data.held_out.n_tokens} tokens){held_out_from}"
        + (f"; {data.too_long} instruction pairs too long, dropped" if data.too_long else "")
    )
    return data


def _finish(args, result) -> None:
    summary = {
        "step": result.step,
        "best_val_loss": result.best_val,
        "final_train_loss": result.losses[-1] if result.losses else None,
    }
    print(json.dumps(summary))
    print(f"best checkpoint: {args.out / 'best'}; last: {args.out / 'last'}; log: {args.out / 'log.jsonl'}")


def run_dlm(args) -> None:
    from codila_engine.train.dlm_pretrain import train_dlm
    from codila_engine.train.masking import DlmNoise

    cfg, device, tokenizer, size = _setup(args)
    data = _data(args, tokenizer)
    noise = DlmNoise(args.span_fraction, args.pad_fraction, span_tokens=args.span_tokens)
    _finish(
        args,
        train_dlm(
            tokenizer,
            data.train,
            data.held_out,
            cfg,
            size=size,
            init=args.init,
            objective=args.objective,
            device=device,
            noise=noise,
        ),
    )


def _adapt_setup(args, command: str, make_tokenizer):
    """The base folder, loop config, device, dtype, tokenizer and data of dlm-adapt / ar-adapt."""
    from codila_engine.models.checkpoint import default_dtype
    from codila_engine.prepare.default_model import default_model_folder
    from codila_engine.train.corpus import Corpus, read_python_dirs

    if not args.held_out_dir:
        raise SystemExit(f"codila train {command}: give --held-out-dir DIR (whole packages kept for validation)")
    base = args.base or default_model_folder()
    args.tokenizer = base
    cfg, device, _, _ = _setup(args)
    tokenizer = make_tokenizer(base)
    train_corpus = _corpus(args)
    held_out, _ = read_python_dirs(args.held_out_dir, args.progress)
    data = _data(args, tokenizer, Corpus(train_corpus.train, held_out, train_corpus.report))
    return base, cfg, device, default_dtype(device, None if args.dtype == "auto" else args.dtype), tokenizer, data


def run_dlm_adapt(args) -> None:
    from codila_engine.train.adapt import dream_tokenizer, train_adapt
    from codila_engine.train.masking import DlmNoise

    base, cfg, device, dtype, tokenizer, data = _adapt_setup(args, "dlm-adapt", dream_tokenizer)
    noise = DlmNoise(args.span_fraction, args.pad_fraction, span_tokens=args.span_tokens)
    _finish(
        args,
        train_adapt(
            tokenizer,
            base,
            data.train,
            data.held_out,
            cfg,
            device=device,
            dtype=dtype,
            rank=args.rank,
            mask_lr=args.mask_lr,
            noise=noise,
            curve_windows=args.curve_windows,
            init=args.init_adapter,
        ),
    )


def run_ar_adapt(args) -> None:
    from codila_engine.prepare.default_model import adapted_folder
    from codila_engine.train.ar_adapt import ar_tokenizer, train_ar_adapt

    base, cfg, device, dtype, tokenizer, data = _adapt_setup(args, "ar-adapt", ar_tokenizer)
    dlm = args.dlm or adapted_folder("dlm")
    _finish(
        args,
        train_ar_adapt(
            tokenizer,
            base,
            dlm,
            data.train,
            data.held_out,
            cfg,
            device=device,
            dtype=dtype,
            rank=args.rank,
            rows_lr=args.rows_lr,
            block_sizes=tuple(args.block_size),
            conditioning=args.conditioning,
            init=args.init_adapter,
        ),
    )


def run_dlm_curve(args) -> None:
    from codila_engine.train.adapt import plot_curve

    curve = plot_curve(args.run / "log.jsonl", args.out, args.tokens_per_step, {"random-50": 0.45, "span-32": 0.20})
    for r in curve:
        print(
            f"step {r['step']:6d}  val loss {r['val_loss']:.3f}  random-15 {r['random-15']:.3f}  "
            f"random-50 {r['random-50']:.3f}  span-32 {r['span-32']:.3f}"
        )
    print(f"wrote {args.out}")


def run_dlm_probe(args) -> None:
    import torch

    from codila_engine.models.checkpoint import default_dtype
    from codila_engine.train.adapt import curve_metrics, eval_windows, load_adapted
    from codila_engine.train.sequences import SequenceData

    cached = args.run / "data" / f"held_out-{args.seq_len}.safetensors"
    if not cached.is_file():
        raise SystemExit(f"{cached} does not exist: give a dlm-adapt run's --out folder and its --seq-len")
    if args.threads:
        torch.set_num_threads(args.threads)
    windows = eval_windows(SequenceData.read(cached).packed(), args.windows, args.seq_len)
    device = torch.device("cpu")
    dtype = default_dtype(device, None if args.dtype == "auto" else args.dtype)
    for adapter in args.adapter:
        made = json.loads((adapter / "base.json").read_text())  # the base and token ids it was trained with
        model = load_adapted(adapter, args.base or made["base"], device, dtype, made["tokens"])
        print(json.dumps({"adapter": str(adapter), "windows": len(windows), **curve_metrics(windows)(model)}))


def run_export(args) -> None:
    from codila_engine.prepare.default_model import default_model_folder
    from codila_engine.train.adapt import export_dream
    from codila_engine.train.ar_adapt import export_ar

    export = export_dream if args.kind == "dlm-adapt" else export_ar
    print(f"wrote {export(args.adapter, args.base or default_model_folder(), args.out)}")


def run_ar_pretrain(args) -> None:
    from codila_engine.train.ar_pretrain import train_ar

    cfg, device, tokenizer, size = _setup(args)
    data = _data(args, tokenizer)
    _finish(args, train_ar(tokenizer, data.train, data.held_out, cfg, size=size, init=args.init, device=device))


def run_ar_codila(args) -> None:
    from codila_engine.train.ar_codila import train_ar_codila

    if args.init is None and not args.resume:
        raise SystemExit("codila train ar-codila: give --init (the AR to finetune) or --resume")
    cfg, device, tokenizer, _ = _setup(args)
    data = _data(args, tokenizer)
    _finish(
        args,
        train_ar_codila(
            tokenizer,
            data.train,
            data.held_out,
            cfg,
            dlm_path=args.dlm,
            init=args.init,
            block_sizes=tuple(args.block_size),
            conditioning=args.conditioning,
            device=device,
        ),
    )
