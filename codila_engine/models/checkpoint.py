"""Model folders: check that a folder holds a whole checkpoint before anything loads it.

A wrong path or a half-copied folder should fail in a second with the missing file named,
not after minutes of loading or with a stack trace from deep inside transformers.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import torch

from codila_engine.config import DTYPES as DTYPE_NAMES


class ModelFolderError(FileNotFoundError):
    """A model folder is missing, incomplete, or holds the wrong kind of model."""

    damaged = False  # True: the files are there but broken (a runtime failure, not a usage error)


class DamagedModel(ModelFolderError):
    """A model file is there but cannot be read (truncated, corrupted)."""

    damaged = True


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16 matmuls


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags (Linux), or None where the kernel does not list them."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    return set(lines[0].split(":", 1)[1].split()) if lines else None


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether bfloat16 matmuls beat float32 on this CPU (once per process).

    With AVX512-BF16 or AMX they are ~3x faster; without, bfloat16 is emulated and slower, and
    torch's capability string does not tell the two apart. The CPU flags decide where the kernel
    lists them: a timing taken on a busy machine (a training run beside the server) once chose
    float32 and doubled the server's memory. Elsewhere a ~30 ms matmul timing decides."""
    flags = cpu_flags()
    if flags is not None:
        return any(flag in flags for flag in BF16_FLAGS)

    def best(dtype: torch.dtype) -> float:
        a, b = torch.randn(512, 512, dtype=dtype), torch.randn(512, 512, dtype=dtype)
        a @ b
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(torch.bfloat16) * 1.3 < best(torch.float32)


def default_dtype(device: torch.device, name: str | None = None) -> torch.dtype:
    """`name` (float32, bfloat16, float16; None or "auto" = env CODILA_DTYPE, else chosen):
    bfloat16 on CUDA, and on a CPU where it is measured faster; float32 otherwise."""
    name = name or os.environ.get("CODILA_DTYPE") or "auto"
    if name != "auto":
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {name!r}: use auto, {', '.join(DTYPES)}")
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_bf16_is_faster() else torch.float32


def check_folder(path: str | Path, role: str) -> Path:
    """Return the folder if it has config, tokenizer and every weight shard; else explain."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ModelFolderError(
            f"{role} folder {folder} is a file, not a folder (give the folder that holds config.json and the weights)"
        )
    if not folder.is_dir():
        raise ModelFolderError(f"{role} folder {folder} does not exist (give the path of a local model folder)")
    if not (folder / "config.json").is_file():
        raise ModelFolderError(f"{role} folder {folder} has no config.json: is this a Hugging Face model folder?")
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            raise ModelFolderError(f"{role} weight index {index} is unreadable: {exc}") from exc
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ModelFolderError(
                f"{role} folder {folder} is incomplete: missing weight shard(s) {', '.join(missing)} "
                f"listed in {index.name}"
            )
    elif not single.is_file():
        raise ModelFolderError(
            f"{role} folder {folder} has no weights: expected model.safetensors or model.safetensors.index.json"
        )
    if not (folder / "tokenizer.json").is_file() and not (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    ):
        raise ModelFolderError(
            f"{role} folder {folder} has no tokenizer: expected tokenizer.json (or vocab.json + merges.txt)"
        )
    return folder


def read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except ValueError as exc:
        raise ModelFolderError(f"{folder / 'config.json'} is not valid JSON: {exc}") from exc


def load_tokenizer(folder: Path):
    """A fast tokenizer from tokenizer.json, or Qwen2's BPE from vocab.json + merges.txt
    (Dream ships the latter with a remote-code tokenizer class that we do not run)."""
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    return Qwen2Tokenizer.from_pretrained(str(folder))


def build_config(config_cls, fields: dict, folder: Path, role: str):
    """transformers' config class from config.json fields; its validation errors name the file."""
    try:
        return config_cls(**fields)
    except Exception as exc:  # transformers validates in several error types, all from this file
        raise ModelFolderError(f"{role} config.json in {folder} is invalid: {exc}") from exc


def load_weights(model_cls, folder: Path, config, device: torch.device, dtype: torch.dtype, role: str):
    """Load safetensors weights into `model_cls(config)`; any missing or unexpected key is an error.
    transformers' own progress bar stays off: the caller says what is loading."""
    from transformers.utils import logging as hf_logging

    from safetensors import SafetensorError

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = model_cls.from_pretrained(
            str(folder),
            config=config,
            dtype=dtype,
            device_map=str(device) if device.type != "cpu" else None,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported below as one clear error instead
        )
    except SafetensorError as exc:
        raise DamagedModel(
            f"{role} weights in {folder} cannot be read ({exc}): the file is truncated or corrupted; "
            "copy it again (the default model: codila models remove && codila models prepare)"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{k.replace('_', ' ')}: {sorted(map(str, v))[:5]}" for k, v in problems.items())
        raise ModelFolderError(f"{role} weights in {folder} do not match its config.json ({detail})")
    return model.to(device).eval()


_NOT_CONFIG = {"architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype"}


def load_checkpoint(
    path,
    role: str,
    kind: str,
    is_kind,
    model_cls,
    config_cls,
    *,
    device: torch.device | None,
    dtype: torch.dtype | None,
    required: tuple[str, ...] = (),
    **overrides,
):
    """Check, configure and load one model folder: (model, tokenizer, raw config.json).

    `is_kind(raw)` tells whether config.json describes the expected kind of model; the config
    class is built from config.json's own fields plus `overrides`.
    """
    folder = check_folder(path, role)
    raw = read_config(folder)
    if not is_kind(raw):
        raise ModelFolderError(
            f"{role} folder {folder} is not a {kind} checkpoint "
            f"(architectures={raw.get('architectures')}, model_type={raw.get('model_type')!r})"
        )
    for key in required:
        if raw.get(key) is None:
            raise ModelFolderError(f"{role} config {folder / 'config.json'} has no {key}")
    fields = {**{k: v for k, v in raw.items() if k not in _NOT_CONFIG}, **overrides}
    config = build_config(config_cls, fields, folder, role)
    device = device or default_device()
    model = load_weights(model_cls, folder, config, device, dtype or default_dtype(device), role)
    return model, load_tokenizer(folder), raw
