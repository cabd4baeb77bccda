"""Sequences, model folders, the training loop and the CLI, on a tiny corpus and tiny models."""

import argparse
import json

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from codila_engine.train.ar_pretrain import ar_loss, causal_labels, train_ar
from codila_engine.train.cli import add_train_subcommands
from codila_engine.train.corpus import Document
from codila_engine.train.data import cached_sequences
from codila_engine.train.dlm_pretrain import train_dlm
from codila_engine.train.loop import LoopConfig, train
from codila_engine.train.masking import IGNORE
from codila_engine.train.models import ModelSize, count_parameters, new_ar, new_dlm, save_ar, save_dream
from codila_engine.train.sequences import to_sequences, window_starts
from codila_engine.train.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

TINY = ModelSize(hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64, max_positions=128)
SEQ = 32


def _file(i: int) -> str:
    return (
        f"def scale_{i}(values):\n    result = []\n    for v in values:\n        result.append(v * {i % 10})\n"
        f"    return result\n"
    )


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_tokenizer([_file(i) for i in range(200)], vocab_size=300, show_progress=False), folder)
    return load_tokenizer(folder)


@pytest.fixture(scope="module")
def data(tokenizer):
    train, _ = to_sequences([Document(f"f{i}", _file(i)) for i in range(60)], tokenizer, SEQ, progress=False)
    val, _ = to_sequences([Document(f"v{i}", _file(i)) for i in range(60, 64)], tokenizer, SEQ, progress=False)
    return train, val


def _cfg(tmp_path, **kw) -> LoopConfig:
    defaults = dict(out=tmp_path / "run", steps=30, batch_size=8, lr=3e-3, val_every=10, val_batches=1, progress=False)
    return LoopConfig(**{**defaults, **kw})


def test_window_starts_cover_the_document():
    assert window_starts(5, 8) == [0]
    assert window_starts(20, 8) == [0, 8, 12]
    assert window_starts(16, 8) == [0, 8]


def test_code_sequences_are_windows_padded_with_eos(tokenizer):
    long = "\n".join(_file(i) for i in range(5))
    data, _ = to_sequences([Document("a", long), Document("b", "x = 1\n")], tokenizer, SEQ, progress=False)
    ids = tokenizer(long, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    batch = data.batch(torch.arange(len(data)))
    assert batch.ids[0].tolist() == ids[:SEQ]
    assert batch.ids[len(data) - 2].tolist() == ids[-SEQ:], "the last window ends with the file"
    short = batch.ids[-1]
    n = int(batch.lengths[-1])
    assert short[:n].tolist() == tokenizer("x = 1\n", add_special_tokens=False)["input_ids"] + [0]
    assert (short[n:] == tokenizer.pad_token_id).all() and (batch.target_starts == 0).all()


def test_instruction_sequences_target_the_response(tokenizer):
    docs = [Document("s:1", "return a + b", prompt="Add a and b."), Document("s:2", "x" * 500, prompt="Long.")]
    data, too_long = to_sequences(docs, tokenizer, SEQ, progress=False)
    assert len(data) == 1 and too_long == 1
    batch = data.batch(torch.tensor([0]))
    start = int(batch.target_starts[0])
    assert tokenizer.decode(batch.ids[0, :start]) == "Add a and b.\n"
    assert tokenizer.decode(batch.ids[0, start : int(batch.lengths[0]) - 1]) == "return a + b"
    labels = causal_labels(batch)[0]
    assert (labels[:start] == IGNORE).all() and (labels[int(batch.lengths[0]) :] == IGNORE).all()
    assert labels[int(batch.lengths[0]) - 1] == tokenizer.eos_token_id, "the AR learns to stop"


def test_sequence_cache_is_reused_only_for_the_same_inputs(tokenizer, tmp_path):
    docs = [Document(f"f{i}", _file(i)) for i in range(5)]
    cache = tmp_path / "train.safetensors"
    first, _ = cached_sequences(docs, tokenizer, SEQ, cache, progress=False)
    again, _ = cached_sequences(docs, tokenizer, SEQ, cache, progress=False)
    assert torch.equal(first.tokens, again.tokens) and torch.equal(first.starts, again.starts)
    other, _ = cached_sequences(docs[:3], tokenizer, SEQ, cache, progress=False)
    assert len(other) < len(first)


def test_dream_folder_loads_as_qwen2_without_missing_keys(tokenizer, tmp_path):
    model = new_dlm(TINY, tokenizer).eval()
    folder = save_dream(model, tokenizer, tmp_path / "dlm", max_shard_size="40KB")
    fields = json.loads((folder / "config.json").read_text())
    assert fields["architectures"] == ["DreamModel"] and fields["model_type"] == "Dream"
    assert fields["mask_token_id"] == tokenizer.mask_token_id
    assert fields["eos_token_id"] == fields["pad_token_id"] == tokenizer.eos_token_id
    assert fields["bos_token_id"] is not None and fields["tie_word_embeddings"] is False
    assert "is_causal" not in fields
    assert (folder / "model.safetensors.index.json").is_file(), "weights above max_shard_size are sharded"
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in folder.iterdir()}
    loaded, info = Qwen2ForCausalLM.from_pretrained(
        folder, config=Qwen2Config(**fields, is_causal=False), output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.randint(4, len(tokenizer), (1, 12))
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)
        changed = ids.clone()
        changed[0, -1] = (changed[0, -1] + 1) % len(tokenizer)
        assert not torch.allclose(loaded(changed).logits[0, 0], loaded(ids).logits[0, 0]), "attention is bidirectional"


def test_engine_loads_both_folders(tokenizer, tmp_path):
    from codila_engine.models.ar import LocalAR
    from codila_engine.models.dlm import DreamDLM

    dlm = DreamDLM.load(save_dream(new_dlm(TINY, tokenizer), tokenizer, tmp_path / "d"), device=torch.device("cpu"))
    assert dlm.mask_id == tokenizer.mask_token_id
    ar_model = new_ar(TINY, tokenizer)
    ar = LocalAR.load(save_ar(ar_model, tokenizer, tmp_path / "a"), device=torch.device("cpu"))
    assert ar.embedding.shape == (len(tokenizer), TINY.hidden)
    assert count_parameters(ar_model) < sum(p.numel() for p in ar_model.state_dict().values()), "tied once"


def _mean(xs):
    return sum(xs) / len(xs)


def test_dlm_training_lowers_the_loss_and_keeps_the_best(tokenizer, data, tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, steps=40)
    result = train_dlm(tokenizer, *data, cfg, size=TINY)
    assert _mean(result.losses[-8:]) < _mean(result.losses[:8]) - 1.0
    assert [s for s, _ in result.val_losses] == [10, 20, 30, 40]
    assert result.best_val == min(v for _, v in result.val_losses)
    best = json.loads((cfg.out / "best" / "checkpoint.json").read_text())
    assert best["val_loss"] == result.best_val
    log = [json.loads(line) for line in (cfg.out / "log.jsonl").read_text().splitlines()]
    assert sum(r["event"] == "val" for r in log) == 4 and sum(r["event"] == "train" for r in log) == 40


def test_ar_training_lowers_the_loss(tokenizer, data, tmp_path):
    torch.manual_seed(0)
    result = train_ar(tokenizer, *data, _cfg(tmp_path), size=TINY)
    assert _mean(result.losses[-5:]) < _mean(result.losses[:5]) - 1.0


def test_resume_continues_at_the_saved_step_with_the_same_batches(tokenizer, data, tmp_path):
    torch.manual_seed(0)
    full = train_ar(tokenizer, *data, _cfg(tmp_path / "full", steps=10, val_every=5), size=TINY)

    calls = 0

    def crash_at_step_7(model, batch, g):
        nonlocal calls
        calls += 1
        if calls == 7:
            raise KeyboardInterrupt
        return ar_loss(model, batch, g)

    torch.manual_seed(0)
    cfg = _cfg(tmp_path / "cut", steps=10, val_every=5)
    with pytest.raises(KeyboardInterrupt):
        train(new_ar(TINY, tokenizer), crash_at_step_7, lambda m, f: save_ar(m, tokenizer, f), *data, cfg)
    assert json.loads((cfg.out / "last" / "checkpoint.json").read_text())["step"] == 5
    resumed = train_ar(tokenizer, *data, LoopConfig(**{**cfg.__dict__, "resume": True}), size=TINY)
    assert resumed.step == 10 and len(resumed.losses) == 5
    assert resumed.losses == pytest.approx(full.losses[5:], rel=1e-4)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train_ar(tokenizer, *data, _cfg(tmp_path / "new", resume=True), size=TINY)


def test_cli_end_to_end(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"m{i}.py").write_text(_file(i))
    parser = argparse.ArgumentParser(prog="codila")
    add_train_subcommands(parser.add_subparsers(dest="command", required=True))
    common = ["--data-dir", str(src), "--no-progress", "--held-out-fraction", "0.2"]

    def run(*argv):
        args = parser.parse_args(["train", *argv, *common])
        args.func(args)

    run("tokenizer", "--out", str(tmp_path / "tok"), "--vocab-size", "300")
    model = [
        "--tokenizer",
        str(tmp_path / "tok"),
        "--hidden",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--intermediate",
        "64",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--seq-len",
        "32",
        "--val-every",
        "2",
        "--val-batches",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    run("dlm", "--out", str(tmp_path / "dlm"), *model)
    run("ar-pretrain", "--out", str(tmp_path / "ar"), *model)
    out = capsys.readouterr().out
    assert "excluded for containing HumanEval: 0" in out and '"step": 3' in out
    for name in ("dlm", "ar"):
        assert (tmp_path / name / "best" / "config.json").is_file()
        assert json.loads((tmp_path / name / "last" / "checkpoint.json").read_text())["step"] == 3
    args = parser.parse_args(["train", "dlm", "--out", str(tmp_path / "x"), *common])
    with pytest.raises(SystemExit, match="--tokenizer"):
        args.func(args)


def test_packed_windows_cover_the_stream_without_padding(tokenizer):
    docs = [Document(f"f{i}", f"x_{i} = scale_{i}([{i}])\n") for i in range(40)]  # short files: padded windows
    data, _ = to_sequences(docs, tokenizer, SEQ, progress=False)
    packed = data.packed()
    assert len(packed) == (len(data.tokens) - 1) // SEQ
    batch = packed.batch(torch.arange(len(packed)))
    assert torch.equal(batch.ids.flatten(), data.tokens[: len(packed) * SEQ].long())
    assert (batch.lengths == SEQ).all() and (batch.target_starts == 0).all()
    eos = tokenizer.eos_token_id
    assert (batch.ids == eos).float().mean() < (data.batch(torch.arange(len(data))).ids == eos).float().mean()


def test_packing_refuses_instruction_data(tokenizer):
    pairs = [Document("p", "return 1\n", prompt="write a function")]
    data, _ = to_sequences(pairs, tokenizer, SEQ, progress=False)
    with pytest.raises(ValueError, match="--pack is for directories of code files"):
        data.packed()


def test_causal_objective_trains_the_dlm_as_an_ar_then_loads_bidirectional(tokenizer, data, tmp_path):
    from codila_engine.models.dlm import DreamDLM

    torch.manual_seed(0)
    cfg = _cfg(tmp_path, steps=30)
    result = train_dlm(tokenizer, *data, cfg, size=TINY, objective="causal")
    assert _mean(result.losses[-5:]) < _mean(result.losses[:5]) - 1.0
    dlm = DreamDLM.load(cfg.out / "best", device=torch.device("cpu"))
    assert dlm.model.config.is_causal is False  # the Dream loader makes it bidirectional again
    ids = data[0].batch(torch.arange(1)).ids[0]
    changed = ids.clone()
    changed[-1] = (changed[-1] + 1) % len(tokenizer)
    assert not torch.allclose(dlm.hidden_states(ids)[0], dlm.hidden_states(changed)[0])
