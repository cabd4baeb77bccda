"""Turning the default model's bytes into model folders: the GGUF into an ordinary Hugging Face
folder (bfloat16 safetensors, tied embeddings, tokenizer), and, for the default DLM and CoDiLA AR,
that folder with a dlm-adapt / ar-adapt adapter merged in. `default_model.py` decides when and
where (cache, lock, manifest); this module only converts.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm


def say(line: str) -> None:
    print(f"codila: {line}", file=sys.stderr, flush=True)


@contextmanager
def quiet_transformers():
    """transformers' warnings, info lines and progress bars off meanwhile: ours say what happens."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def convert_gguf(gguf_path: Path, out_dir: Path, progress: bool) -> None:
    """GGUF -> Hugging Face folder: bfloat16 safetensors, lm_head tied to the embeddings, tokenizer.json.

    The weights are dequantized by transformers' own GGUF reader (what `from_pretrained(gguf_file=)`
    uses for qwen2, minus its `accelerate` requirement) straight into bfloat16. transformers'
    warnings and progress bars are silenced meanwhile; ours say what happens.
    """
    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.initialization import no_init_weights

    where, name = str(gguf_path.parent), gguf_path.name
    reader_bar = gguf_utils.tqdm
    gguf_utils.tqdm = lambda tensors, desc=None: tqdm(
        tensors, desc="converting weights", unit="tensor", file=sys.stderr, disable=not progress
    )
    try:
        with quiet_transformers():
            say("converting: reading the tokenizer and config (about half a minute), then the weights")
            tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
            config = AutoConfig.from_pretrained(where, gguf_file=name)
            config.tie_word_embeddings = True
            with no_init_weights():  # every weight comes from the GGUF: skip 9 s of random init
                model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
            tensors = gguf_utils.load_gguf_checkpoint(
                str(gguf_path), return_tensors=True, model_to_load=model, torch_dtype=torch.bfloat16
            )["tensors"]
            say("converting: saving bfloat16 safetensors")
            save_hf_folder(model, tensors, tokenizer, out_dir)
    finally:
        gguf_utils.tqdm = reader_bar


def save_hf_folder(model, tensors: dict, tokenizer, out_dir: Path) -> None:
    """Load `tensors` into `model` with lm_head tied to the input embeddings; save safetensors and tokenizer.

    The GGUF stores output.weight apart, but it is the embedding matrix quantized twice: it is dropped.
    """
    tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ValueError(f"the GGUF's tensors do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.config.tie_word_embeddings = True
    model.tie_weights()
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise ValueError("lm_head could not be tied to the input embeddings")
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def convert_adapted(gguf_path: Path, out_dir: Path, progress: bool, adapter: Path, kind: str) -> None:
    """GGUF -> the base folder (as convert_gguf), then the adapter merged in: a Dream-format DLM
    (`kind` dlm) or a Qwen2 CoDiLA AR with `<think>` tokens (`ar`)."""
    from codila_engine.train.adapt import export_dream
    from codila_engine.train.ar_adapt import export_ar

    base = out_dir / "base"
    convert_gguf(gguf_path, base, progress)
    say(f"converting: merging the {kind.upper()} adapter")
    with quiet_transformers():  # peft's deprecation warnings are not the user's business
        {"dlm": export_dream, "ar": export_ar}[kind](adapter, base, out_dir)
    shutil.rmtree(base)
