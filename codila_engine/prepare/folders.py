"""Which model folders a command or the server loads: the ones given, else the pair shipped in the
package, else the default model (prepared on first use)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codila_engine.prepare import default_model, source


def shipped_models() -> tuple[Path, Path] | None:
    """The small DLM/AR pair inside the package, used when no model folders are given."""
    assets = Path(__file__).parent.parent / "assets"
    dlm, ar = assets / "dlm", assets / "ar"
    return (dlm, ar) if (dlm / "config.json").is_file() and (ar / "config.json").is_file() else None


@dataclass(frozen=True)
class Models:
    """The model folders a command or the server loads."""

    dlm: str | None
    ar: str | None
    name: str  # what outputs say produced the text


def model_folders(
    dlm: str | Path | None,
    ar: str | Path | None,
    decoder: str | None = None,
    *,
    flags: tuple[str, str] = ("--dlm", "--ar"),
    cache_dir: str | None = None,
    progress: bool = True,
) -> Models:
    """The folders to load, in this order: the ones given (one alone runs the decoder it can);
    the pair shipped in the package; the default model (Qwen2.5-Coder-0.5B: the AR for fim and
    auto; for dlm and dream the DLM made from it with the shipped adapter; for codila that DLM and
    the CoDiLA AR made from it). `decoder` (None: not known yet) is checked against what is given. `flags` are how
    the caller's user names the folders (CLI flags or server settings). An empty string counts
    as not given (an unset `$DLM`)."""
    dlm, ar = (str(dlm) if dlm else None), (str(ar) if ar else None)
    f_dlm, f_ar = flags
    if dlm or ar:
        need = {"codila": (f_dlm, f_ar), "dlm": (f_dlm,), "dream": (f_dlm,), "fim": (f_ar,)}.get(decoder or "auto", ())
        missing = [flag for flag, given in ((f_dlm, dlm), (f_ar, ar)) if flag in need and not given]
        if missing:
            raise ValueError(f"the {decoder} decoder needs {' and '.join(need)}: give {' and '.join(missing)} too")
        return Models(dlm, ar, " + ".join(f"{role} {path}" for role, path in (("DLM", dlm), ("AR", ar)) if path))
    shipped = shipped_models()
    if shipped is not None:
        return Models(str(shipped[0]), str(shipped[1]), "the shipped DLM + AR pair")
    if decoder in ("dlm", "dream"):  # the default model adapted to masked diffusion (the shipped adapter)
        folder = default_model.adapted_folder("dlm", cache_dir, progress=progress)
        return Models(str(folder), None, f"{source.DEFAULT.name} DLM ({folder.name})")
    if decoder == "codila":  # that DLM and the default model finetuned into its CoDiLA AR (shipped adapters)
        if source.adapted_source("ar") is None:
            raise ValueError(
                f"the codila decoder needs a DLM and a CoDiLA-finetuned AR: give {f_dlm} PATH and {f_ar} "
                f"PATH; no CoDiLA AR adapter ships with this version (the default model runs "
                f"--decoder fim, dlm and dream)"
            )
        dlm_folder = default_model.adapted_folder("dlm", cache_dir, progress=progress)
        ar_folder = default_model.adapted_folder("ar", cache_dir, progress=progress)
        return Models(
            str(dlm_folder),
            str(ar_folder),
            f"{source.DEFAULT.name} DLM + CoDiLA AR ({dlm_folder.name}, {ar_folder.name})",
        )
    folder = default_model.default_model_folder(cache_dir, progress=progress)
    return Models(None, str(folder), source.DEFAULT.name)
