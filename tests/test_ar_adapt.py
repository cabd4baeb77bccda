"""Finetuning a causal Qwen2 base into CoDiLA's local AR (codila train ar-adapt) on a tiny base and a
tiny DLM made from it: think tokens at the placeholders' ids, exact resume, and an export that the
AR loader reads with the adapters and think rows applied."""

import json

import pytest
import torch

from codila_engine.models.ar import LocalAR
from codila_engine.train.adapt import export_dream, new_adapted
from codila_engine.train.ar_adapt import ar_tokenizer, export_ar, load_adapted_ar, new_adapted_ar, train_ar_adapt
from codila_engine.train.loop import LoopConfig
from test_adapt import killed_in_step_3_then_resumed, sequences
from tiny_models import build_qwen_like_base


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The tiny base, its Dream tokens, its think tokens, and a Dream-format DLM made from it."""
    root = tmp_path_factory.mktemp("ar-adapt")
    folder, dream = build_qwen_like_base(root)
    think = {"<think>": dream["<|mask|>"] + 1, "</think>": dream["<|mask|>"] + 2}
    new_adapted(folder, torch.device("cpu"), torch.float32, rank=4, tokens=dream).save(root / "dlm-adapter")
    dlm = export_dream(root / "dlm-adapter", folder, root / "dlm", torch.float32, dream)
    return folder, think, dlm


def run(pair, out, steps: int, resume: bool = False):
    folder, think, dlm = pair
    tok = ar_tokenizer(folder, think)
    data = sequences(tok)
    cfg = LoopConfig(
        out=out, steps=steps, batch_size=2, lr=1e-2, val_every=2, val_batches=1, resume=resume, progress=False
    )
    return train_ar_adapt(
        tok,
        folder,
        dlm,
        data,
        data,
        cfg,
        device=torch.device("cpu"),
        dtype=torch.float32,
        rank=4,
        rows_lr=1e-2,
        block_sizes=(2, 4),
        tokens=think,
    )


def test_think_tokens_take_the_placeholders_ids(pair):
    folder, think, _ = pair
    tok = ar_tokenizer(folder, think)
    assert tok.convert_tokens_to_ids(["<think>", "</think>"]) == list(think.values())
    assert tok.encode("<think>x</think>")[0] == think["<think>"]  # one token, not spelled out
    with pytest.raises(ValueError, match="not a free placeholder"):
        ar_tokenizer(folder, {"<think>": 5, "</think>": 6})


def test_resumed_ar_training_follows_the_uninterrupted_loss_curve(pair, tmp_path, monkeypatch):
    torch.manual_seed(0)
    whole = run(pair, tmp_path / "whole", steps=4)
    assert len(whole.losses) == 4 and whole.losses[-1] < whole.losses[0]

    import codila_engine.train.ar_adapt as ar_adapt

    rest = killed_in_step_3_then_resumed(
        monkeypatch, ar_adapt, "codila_loss", lambda **kw: run(pair, tmp_path / "cut", 4, **kw)
    )
    assert rest.step == 4 and rest.losses == pytest.approx(whole.losses[2:], rel=1e-4)
    saved = json.loads((tmp_path / "whole" / "last" / "base.json").read_text())
    assert saved["tokens"] == pair[1]
    assert all(f.stat().st_size < 50e6 for f in (tmp_path / "whole" / "last").iterdir() if f.suffix != ".pt")


def test_export_is_a_qwen2_folder_with_the_adapters_and_think_rows_applied(pair, tmp_path):
    folder, think, _ = pair
    run(pair, tmp_path / "run", steps=2)
    cpu = torch.device("cpu")
    trained = load_adapted_ar(tmp_path / "run" / "last", folder, cpu, torch.float32, think).eval()
    untrained = new_adapted_ar(folder, cpu, torch.float32, rank=4, tokens=think).eval()
    ar = LocalAR.load(
        export_ar(tmp_path / "run" / "last", folder, tmp_path / "ar", torch.float32, think),
        device=cpu,
        dtype=torch.float32,
    )
    assert ar.tokenizer.convert_tokens_to_ids("<think>") == think["<think>"]
    ids = torch.tensor([think["<think>"], 5, 9, 12, think["</think>"], 7, 8])

    def logits(model):
        with torch.no_grad():
            return model(inputs_embeds=model.get_input_embeddings().weight[ids][None]).logits[0].float()

    rows = list(think.values())
    other = torch.ones(ar.embedding.shape[0], dtype=torch.bool)
    other[rows] = False  # the tied lm_head scores the think ids with their new rows: never emitted anyway
    exported = logits(ar.model)[:, other]
    assert torch.allclose(exported, logits(trained)[:, other], atol=1e-4)
    assert not torch.allclose(exported, logits(untrained)[:, other], atol=1e-3)  # adapters and rows are applied
    assert not torch.allclose(ar.embedding[rows], untrained.get_input_embeddings().weight[rows])
