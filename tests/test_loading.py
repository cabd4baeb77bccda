"""Model folders: clear errors for wrong paths and incomplete or foreign checkpoints; the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from codila_engine.models.checkpoint import ModelFolderError
from codila_engine.cli import main
from codila_engine.models.dlm import DreamDLM
from codila_engine.models.ar import LocalAR
from codila_engine.engine import Engine


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        DreamDLM.load(tmp_path / "nowhere", device=None)


@pytest.mark.parametrize(
    "missing,message",
    [
        ("config.json", "has no config.json"),
        ("model.safetensors", "has no weights"),
        ("tokenizer.json", "has no tokenizer"),
    ],
)
def test_incomplete_folder_names_missing_file(tiny_pair, tmp_path, missing, message):
    folder = copy(tiny_pair[0], tmp_path / "dlm")
    (folder / missing).unlink()
    with pytest.raises(ModelFolderError, match=message):
        DreamDLM.load(folder)


def test_missing_shard_is_named(tiny_pair, tmp_path):
    folder = copy(tiny_pair[0], tmp_path / "dlm")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    index = {
        "metadata": {},
        "weight_map": {
            "lm_head.weight": "model-00002-of-00002.safetensors",
            "model.norm.weight": "model-00001-of-00002.safetensors",
        },
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFolderError, match="missing weight shard.*model-00002-of-00002"):
        DreamDLM.load(folder)


def test_sharded_checkpoint_loads(tiny_pair, tmp_path):
    from transformers import Qwen3ForCausalLM

    ar = LocalAR.load(tiny_pair[1], device=None)
    out = tmp_path / "ar"
    ar.model.save_pretrained(str(out), max_shard_size="100KB")
    ar.tokenizer.save_pretrained(str(out))
    assert (out / "model.safetensors.index.json").is_file()
    again = LocalAR.load(out)
    assert isinstance(again.model, Qwen3ForCausalLM)


def test_wrong_model_kinds(tiny_pair):
    dlm_dir, ar_dir = tiny_pair
    with pytest.raises(ModelFolderError, match="not a Dream checkpoint"):
        DreamDLM.load(ar_dir)
    with pytest.raises(ModelFolderError, match="not a Qwen3 or Qwen2 checkpoint"):
        LocalAR.load(dlm_dir)


def test_weights_that_do_not_match_config(tiny_pair, tmp_path):
    folder = copy(tiny_pair[0], tmp_path / "dlm")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 96
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match="do not match its config.json"):
        DreamDLM.load(folder)
    cfg["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match="(?s)DLM config.json .* is invalid: .*num_hidden_layers"):
        DreamDLM.load(folder)


def test_think_ids_override(tiny_pair):
    engine = Engine.load(*tiny_pair, device="cpu", think_ids=(5, 6))
    assert (engine.bridge.think_id, engine.bridge.end_think_id) == (5, 6)
    with pytest.raises(ValueError, match="outside the AR's embedding"):
        Engine.load(*tiny_pair, device="cpu", think_ids=(5, 10_000))


def test_cli_infill_and_generate(tiny_pair, tmp_path, capsys):
    prefix, suffix = tmp_path / "p.py", tmp_path / "s.py"
    prefix.write_text("def f(x):\n")
    suffix.write_text("\nprint(f(1))\n")
    args = ["--dlm", str(tiny_pair[0]), "--ar", str(tiny_pair[1]), "--device", "cpu", "--max-new-tokens", "8"]
    assert main(["infill", "--prefix-file", str(prefix), "--suffix-file", str(suffix), "--json", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stats"]["iterations"] == 2 and out["stats"]["tokens"] == 8 and not out["cancelled"]
    assert main(["generate", "--prompt", "x = ", "--decoder", "dlm", "--tokens-per-step", "1", *args]) == 0
    err = capsys.readouterr().err
    assert "iteration 8: +1 tokens (dlm)" in err and "8 iterations" in err


def test_cli_errors_are_clear(tiny_pair, capsys):
    assert main(["generate", "--prompt", "x", "--dlm", "/nonexistent", "--ar", str(tiny_pair[1])]) == 2
    assert "DLM folder /nonexistent does not exist" in capsys.readouterr().err
    assert (
        main(["generate", "--prompt", "x", "--dlm", str(tiny_pair[0]), "--ar", str(tiny_pair[1]), "--block-size", "0"])
        == 2
    )
    assert "--block-size: must be a whole number of tokens >= 1, got 0" in capsys.readouterr().err


def test_dream_style_tokenizer_files(tiny_pair, tmp_path):
    """Dream ships vocab.json + merges.txt and a remote-code tokenizer class; we read the files
    as Qwen2's BPE, with the special tokens from added_tokens_decoder."""
    from tokenizers import Tokenizer

    folder = copy(tiny_pair[0], tmp_path / "dream")
    fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
    fast.model.save(str(folder))
    (folder / "tokenizer.json").unlink()
    specials = {name: fast.token_to_id(name) for name in ("<|endoftext|>", "<|beginoftext|>", "<|mask|>")}
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t, i in specials.items()
    }
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "added_tokens_decoder": added,
                "tokenizer_class": "DreamTokenizer",
                "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "mask_token": "<|mask|>",
            }
        )
    )
    engine = Engine.load(folder, tiny_pair[1], device="cpu")
    assert engine.tokenizer.convert_tokens_to_ids("<|mask|>") == specials["<|mask|>"] == engine.dlm.mask_id
    assert not engine.bridge.keep[specials["<|beginoftext|>"]]
    assert engine.decode("x = 1\n", "").run().stats.iterations >= 1


def test_cpu_dtype_follows_the_bf16_flags_not_a_timing(tmp_path, monkeypatch):
    import torch

    import codila_engine.models.checkpoint as ck

    native, emulated = tmp_path / "native", tmp_path / "emulated"
    native.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    emulated.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert "avx512_bf16" in ck.cpu_flags(native) and ck.cpu_flags(tmp_path / "missing") is None
    read = ck.cpu_flags
    monkeypatch.delenv("CODILA_DTYPE", raising=False)  # the suite pins float32; this test is about auto
    monkeypatch.setattr(ck.time, "perf_counter", lambda: 1 / 0)  # a timing would raise
    try:
        for path, want in ((native, True), (emulated, False)):
            ck.cpu_bf16_is_faster.cache_clear()
            monkeypatch.setattr(ck, "cpu_flags", lambda path=path: read(path))
            assert ck.cpu_bf16_is_faster() is want
            assert ck.default_dtype(torch.device("cpu")) == (torch.bfloat16 if want else torch.float32)
    finally:
        ck.cpu_bf16_is_faster.cache_clear()
