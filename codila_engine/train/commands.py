"""What `codila train ...` runs: the run_* functions (and their helpers), each taking the parsed arguments.

The argparse declarations are in train/cli.py, which points each subcommand at its run_* here; the
heavy imports (torch, transformers, the trainers) stay inside the functions, so the CLI stays fast.
"""

from __future__ import annotations

import json
import time

from codila_engine.train.models import ModelSize


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
    """The base folder, loop config, tokenizer and data of dlm-adapt / ar-adapt, and the keyword
    arguments both trainers take (device, dtype, LoRA rank, starting adapter)."""
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
    dtype = default_dtype(device, None if args.dtype == "auto" else args.dtype)
    return base, cfg, tokenizer, data, {"device": device, "dtype": dtype, "rank": args.rank, "init": args.init_adapter}


def run_dlm_adapt(args) -> None:
    from codila_engine.train.adapt import check_distill, dream_tokenizer, train_adapt
    from codila_engine.train.masking import DlmNoise

    check_distill(args.distill)  # before minutes of reading the corpus
    base, cfg, tokenizer, data, common = _adapt_setup(args, "dlm-adapt", dream_tokenizer)
    noise = DlmNoise(args.span_fraction, args.pad_fraction, span_tokens=args.span_tokens)
    result = train_adapt(
        tokenizer,
        base,
        data.train,
        data.held_out,
        cfg,
        mask_lr=args.mask_lr,
        noise=noise,
        curve_windows=args.curve_windows,
        distill=args.distill,
        **common,
    )
    _finish(args, result)


def run_ar_adapt(args) -> None:
    from codila_engine.prepare.default_model import adapted_folder
    from codila_engine.train.ar_adapt import ar_tokenizer, train_ar_adapt

    base, cfg, tokenizer, data, common = _adapt_setup(args, "ar-adapt", ar_tokenizer)
    dlm = args.dlm or adapted_folder("dlm")
    result = train_ar_adapt(
        tokenizer,
        base,
        dlm,
        data.train,
        data.held_out,
        cfg,
        rows_lr=args.rows_lr,
        block_sizes=tuple(args.block_size),
        conditioning=args.conditioning,
        **common,
    )
    _finish(args, result)


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
    from codila_engine.prepare.default_model import default_model_folder
    from codila_engine.train.adapt import DREAM_TOKENS, curve_metrics, eval_windows, load_adapted, span_profile
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
        made_file = adapter / "base.json"  # the base and token ids it was trained with; a shipped adapter has none
        made: dict = json.loads(made_file.read_text()) if made_file.is_file() else {}
        base = args.base or made.get("base") or default_model_folder()
        model = load_adapted(adapter, base, device, dtype, made.get("tokens", DREAM_TOKENS))
        out = {"adapter": str(adapter), "windows": len(windows), **curve_metrics(windows)(model)}
        if args.profile:
            profile = span_profile(model.eval(), windows)
            out["span-32 top-1 by position"] = [round(x, 4) for x in profile["top1"]]
            out["span-32 entropy by position"] = [round(x, 3) for x in profile["entropy"]]
        print(json.dumps(out))


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
