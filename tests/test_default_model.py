"""The default model prepared on first use, with tiny fake wheels and a fake converter (no real model)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

from codila_engine.prepare import default_model as dm
from codila_engine.models.checkpoint import ModelFolderError, check_folder
from codila_engine.prepare.convert import save_hf_folder
from codila_engine.prepare.source import DefaultModelMissing, GgufSource, Part
from codila_engine.prepare import source
from codila_engine.prepare.default_model import (
    MANIFEST,
    DefaultModelCorrupt,
    add_models_subcommand,
    cache_root,
    default_model_folder,
    prepare,
    prepared,
    remove,
    verify,
)

DATA = (b"GGUF" + bytes(range(256)) * 8, b"second part" * 50, b"tail")


def install_fake_parts(site: Path, monkeypatch, datas=DATA, prefix="fakepart", version="0.9.0") -> tuple[Part, ...]:
    """Fake installed distributions (dist-info with METADATA and RECORD, plus one data file each) on sys.path."""
    parts = []
    for i, data in enumerate(datas, 1):
        dist, rel = f"{prefix}{i}", f"{prefix}{i}/data/part0{i}.bin"
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{rel},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
        (site / rel).parent.mkdir(parents=True)
        (site / rel).write_bytes(data)
        parts.append(Part(dist, "0.9.0", rel))
    monkeypatch.syspath_prepend(str(site))
    return tuple(parts)


def fake_spec(parts, datas=DATA, name="fake-model", sha256=None) -> GgufSource:
    joined = b"".join(datas)
    return GgufSource(name, parts, sha256 or hashlib.sha256(joined).hexdigest(), len(joined), output_size=10_000)


class FakeConvert:
    """Writes a small Hugging Face-shaped folder and counts its calls."""

    def __init__(self, fail_midway: BaseException | None = None):
        self.calls, self.fail_midway = 0, fail_midway

    def __call__(self, gguf: Path, out: Path, progress: bool) -> None:
        self.calls += 1
        assert gguf.read_bytes() == b"".join(DATA)
        (out / "config.json").write_text(json.dumps({"model_type": "qwen2", "dtype": "bfloat16"}))
        (out / "model.safetensors").write_bytes(b"w" * 3000)
        if self.fail_midway is not None:
            raise self.fail_midway
        (out / "tokenizer.json").write_text("{}")


@pytest.fixture
def spec(tmp_path, monkeypatch) -> GgufSource:
    return fake_spec(install_fake_parts(tmp_path / "site", monkeypatch))


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def leftovers(cache: Path) -> list[str]:
    models = cache / "models"
    return sorted(p.name for p in models.iterdir() if p.name.startswith(".tmp-")) if models.is_dir() else []


def test_prepares_once_then_reuses_without_the_parts(spec, cache):
    convert = FakeConvert()
    folder = default_model_folder(cache, progress=False, spec=spec, convert=convert)
    assert folder == cache / "models" / "fake-model" and check_folder(folder, "AR") == folder
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["source"] == "fake-model" and manifest["gguf_sha256"] == spec.sha256
    assert manifest["dtype"] == "bfloat16" and manifest["prepared"]
    assert manifest["files"]["model.safetensors"] == {"size": 3000, "sha256": hashlib.sha256(b"w" * 3000).hexdigest()}
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert not (folder / dm.GGUF_NAME).exists() and leftovers(cache) == []

    for path in source.locate_parts(spec):  # a later run never reads the parts again
        path.unlink()
    assert default_model_folder(cache, progress=False, spec=spec, convert=convert) == folder
    assert prepare(spec, cache, progress=False, convert=convert) == folder
    assert convert.calls == 1 and verify(spec, cache) == folder


def test_hash_mismatch_is_refused_and_keeps_a_good_folder(spec, cache):
    good = prepare(spec, cache, progress=False, convert=FakeConvert())
    bad = GgufSource(spec.name, spec.parts, "0" * 64, spec.size, spec.output_size)
    convert = FakeConvert()
    with pytest.raises(DefaultModelCorrupt) as err:
        prepare(bad, cache, progress=False, convert=convert, force=True)
    assert "0" * 64 in str(err.value) and spec.sha256 in str(err.value) and "--force-reinstall" in str(err.value)
    assert convert.calls == 0 and leftovers(cache) == []
    assert prepared(spec, cache) == good  # the good folder is intact

    with pytest.raises(DefaultModelCorrupt):  # in a fresh cache: nothing left behind
        prepare(bad, cache / "other", progress=False, convert=convert)
    assert not (cache / "other" / "models" / spec.name).exists() and leftovers(cache / "other") == []


@pytest.mark.parametrize("problem", ["absent", "file deleted", "wrong version"])
def test_missing_part_names_it_and_says_how_to_install(tmp_path, monkeypatch, cache, problem):
    parts = install_fake_parts(
        tmp_path / "site", monkeypatch, version="0.8.0" if problem == "wrong version" else "0.9.0"
    )
    if problem == "absent":
        parts = (*parts[:1], Part("fakepart-not-installed", "0.9.0", "x/data/part02.bin"), *parts[2:])
    if problem == "file deleted":
        (tmp_path / "site" / parts[1].path_in_dist).unlink()
    spec = fake_spec(parts)
    with pytest.raises(DefaultModelMissing) as err:
        default_model_folder(cache, progress=False, spec=spec, convert=FakeConvert())
    message = str(err.value)
    assert "codila[model]" in message and "\n" not in message
    assert {
        "absent": "fakepart-not-installed",
        "file deleted": "fakepart2/data/part02.bin",
        "wrong version": "fakepart1 0.8.0",
    }[problem] in message
    assert not (cache / "models").exists()


def test_interrupted_conversion_leaves_nothing(spec, cache):
    with pytest.raises(KeyboardInterrupt):
        prepare(spec, cache, progress=False, convert=FakeConvert(fail_midway=KeyboardInterrupt()))
    assert prepared(spec, cache) is None and leftovers(cache) == []
    assert not (cache / "models" / spec.name).exists()
    assert prepare(spec, cache, progress=False, convert=FakeConvert()) == cache / "models" / spec.name


def test_a_killed_preparation_is_not_mistaken_for_a_finished_one(spec, cache):
    models = cache / "models"
    killed = models / f".tmp-{spec.name}-99999-ab12cd34"  # what kill -9 mid-conversion leaves
    killed.mkdir(parents=True)
    (killed / "config.json").write_text("{}")
    (killed / dm.GGUF_NAME).write_bytes(b"GGUF")
    other = models / f".tmp-{spec.name}-x-123-ab12cd34"  # a model whose name extends ours: not ours
    other.mkdir()
    assert prepared(spec, cache) is None
    folder = default_model_folder(cache, progress=False, spec=spec, convert=FakeConvert())
    assert not killed.exists() and other.exists() and prepared(spec, cache) == folder


WORKER = """
import sys, time
from pathlib import Path
from codila_engine.prepare.default_model import default_model_folder
from codila_engine.prepare.source import GgufSource, Part
spec_json, cache, log, go = sys.argv[1:]
import json
raw = json.loads(spec_json)
spec = GgufSource(raw["name"], tuple(Part(*p) for p in raw["parts"]), raw["sha256"], raw["size"], raw["output_size"])
def slow_convert(gguf, out, progress):
    with open(log, "a") as f:
        f.write("convert\\n")
    deadline = time.time() + 60
    while not Path(go).exists() and time.time() < deadline:
        time.sleep(0.05)
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"w" * 100)
    (out / "tokenizer.json").write_text("{}")
print(default_model_folder(cache, progress=False, spec=spec, convert=slow_convert))
"""


def test_concurrent_preparations_convert_once(spec, cache, tmp_path):
    log, go = tmp_path / "convert.log", tmp_path / "go"
    raw = json.dumps(
        {
            "name": spec.name,
            "parts": [list(p.__dict__.values()) for p in spec.parts],
            "sha256": spec.sha256,
            "size": spec.size,
            "output_size": spec.output_size,
        }
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(Path(__file__).parents[1])])}

    def start(name):
        err = open(tmp_path / f"{name}.err", "w")
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, raw, str(cache), str(log), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )

    def wait_for(predicate, what):
        deadline = time.time() + 30
        while not predicate():
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    first = start("first")
    try:
        wait_for(log.exists, "the first process to start converting")
        second = start("second")
        try:  # the second one must wait for the lock while the first is converting
            wait_for(lambda: "waiting for another process" in (tmp_path / "second.err").read_text(), "the lock")
        finally:
            go.touch()
            outs = [p.communicate(timeout=60)[0].strip() for p in (first, second)]
    finally:
        go.touch()
        first.kill()
    assert first.returncode == second.returncode == 0, (tmp_path / "second.err").read_text()
    assert outs[0] == outs[1] == str(cache / "models" / spec.name)
    assert log.read_text() == "convert\n"
    assert prepared(spec, cache) == Path(outs[0]) and verify(spec, cache) and leftovers(cache) == []


def test_damaged_folder_is_reported_with_the_rebuild_command(spec, cache):
    folder = prepare(spec, cache, progress=False, convert=FakeConvert())
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size: only the hash sees it
    assert prepared(spec, cache) == folder
    with pytest.raises(DefaultModelCorrupt, match="model.safetensors"):
        verify(spec, cache)

    weights.write_bytes(data[:1000])  # truncated
    convert = FakeConvert()
    for call in (
        lambda: prepared(spec, cache),
        lambda: default_model_folder(cache, progress=False, spec=spec, convert=convert),
    ):
        with pytest.raises(DefaultModelCorrupt) as err:
            call()
        assert "codila models remove && codila models prepare" in str(err.value)
        assert "model.safetensors" in str(err.value)
    assert convert.calls == 0 and weights.stat().st_size == 1000  # reported, not rebuilt behind our back

    (folder / MANIFEST).unlink()
    with pytest.raises(DefaultModelCorrupt, match=MANIFEST):
        prepared(spec, cache)
    assert prepare(spec, cache, progress=False, convert=convert) == folder  # an explicit prepare rebuilds
    assert convert.calls == 1 and verify(spec, cache) == folder


def test_not_enough_disk_is_refused_before_anything_is_written(spec, cache, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dm.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 123, 123))
    with pytest.raises(ModelFolderError) as err:
        prepare(spec, cache, progress=False, convert=FakeConvert())
    message = str(err.value)
    assert f"{spec.size + spec.output_size:,}" in message and "123 free" in message and str(cache) in message
    assert not cache.exists()


def test_cache_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CODILA_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "codila"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "codila"
    monkeypatch.setenv("CODILA_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert (
        cache_root(tmp_path / "flag") == tmp_path / "flag" and cache_root(str(tmp_path / "flag")) == tmp_path / "flag"
    )


def run_cli(spec, *argv) -> int:
    parser = argparse.ArgumentParser(prog="codila")
    add_models_subcommand(parser.add_subparsers(dest="command", required=True), lambda: [spec])
    args = parser.parse_args(["models", *argv])
    return args.func(args)


def test_models_subcommand(spec, cache, capsys):
    assert run_cli(spec, "list", "--cache-dir", str(cache)) == 0
    assert capsys.readouterr().out.split("\t")[:2] == ["fake-model", "not prepared"]
    missing = GgufSource(spec.name, (Part("fakepart-absent", "0.9.0", "a/b.bin"),), spec.sha256, spec.size, 1)
    assert run_cli(missing, "list", "--cache-dir", str(cache)) == 0
    assert "parts not installed" in capsys.readouterr().out
    assert run_cli(missing, "prepare", "--cache-dir", str(cache)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("codila models: ") and "codila[model]" in err and "\n" not in err
    assert run_cli(spec, "verify", "--cache-dir", str(cache)) == 1
    assert "not prepared" in capsys.readouterr().err

    folder = prepare(spec, cache, progress=False, convert=FakeConvert())
    capsys.readouterr()
    assert run_cli(spec, "list", "--cache-dir", str(cache)) == 0
    name, state, path, size = capsys.readouterr().out.strip().split("\t")
    assert (state, path, size) == ("prepared", str(folder), dm._human(dm._size(folder))) and size == "4 KB"
    assert run_cli(spec, "verify", "--cache-dir", str(cache)) == 0
    assert capsys.readouterr().out.startswith("OK ")

    (folder / "tokenizer.json").write_text("[]")  # same size, other bytes
    assert run_cli(spec, "verify", "--cache-dir", str(cache)) == 1
    assert "tokenizer.json" in capsys.readouterr().err
    (folder / "tokenizer.json").write_text("[1]")
    assert run_cli(spec, "list", "--cache-dir", str(cache)) == 0
    out = capsys.readouterr()
    assert "\tdamaged\t" in out.out and "codila models remove" in out.err

    assert run_cli(spec, "remove", "--cache-dir", str(cache)) == 0
    assert "freed" in capsys.readouterr().out and not folder.exists() and prepared(spec, cache) is None
    assert remove(spec, cache) == 0


def test_saved_folder_is_tied_and_loads(tmp_path):
    """The last step of convert_gguf, on a tiny Qwen2 whose GGUF-like tensors hold a separate lm_head."""
    import torch
    from safetensors import safe_open
    from tiny_models import base_tokenizer
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    tensors = {k: v.to(torch.bfloat16) for k, v in Qwen2ForCausalLM(config).state_dict().items()}
    assert not torch.equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"])
    config.tie_word_embeddings = True
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    save_hf_folder(model, tensors, PreTrainedTokenizerFast(tokenizer_object=base_tokenizer()), tmp_path)

    check_folder(tmp_path, "AR")
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert not any("lm_head" in key for key in f.keys())
        assert torch.equal(f.get_tensor("model.embed_tokens.weight"), tensors["model.embed_tokens.weight"])
        assert torch.equal(f.get_tensor("model.norm.weight"), tensors["model.norm.weight"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["dtype"] == "bfloat16"
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    assert torch.equal(loaded.model.embed_tokens.weight.to(torch.bfloat16), tensors["model.embed_tokens.weight"])

    with pytest.raises(ValueError, match="do not fit"):  # a tensor the model lacks is refused, not dropped
        save_hf_folder(model, {**tensors, "model.extra.weight": torch.zeros(1)}, None, tmp_path / "x")


@pytest.mark.parametrize("kind,trained", [("dlm", "mask_vector.safetensors"), ("ar", "think_rows.safetensors")])
def test_the_default_dlm_and_ar_are_named_by_their_shipped_adapters(tmp_path, monkeypatch, kind, trained):
    from codila_engine.prepare import default_model as dm

    monkeypatch.setitem(source.ADAPTERS, kind, (tmp_path / "none", trained))
    assert source.adapted_source(kind) is None
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"lora weights")
    (adapter / trained).write_bytes(b"trained rows")
    spec = source.adapted_source(kind, adapter)
    assert spec.name.startswith(f"{source.DEFAULT.name}-{kind}-") and spec.adapter == adapter and spec.kind == kind
    assert spec.sha256 == source.DEFAULT.sha256
    (adapter / trained).write_bytes(b"other rows")
    assert source.adapted_source(kind, adapter).name != spec.name  # a new adapter is a new folder, prepared anew
    with pytest.raises(DefaultModelMissing, match=f"no {kind.upper()} adapter ships"):
        dm.adapted_folder(kind, tmp_path / "cache")
