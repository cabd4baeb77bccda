"""Adapting a causal Qwen2 base into a Dream-format DLM (codila train dlm-adapt) on a tiny base:
Dream's tokens at their ids, exact resume, and an export that the Dream loader reads with the
adapters applied."""

import json

import pytest
import torch

from codila_engine.models.dlm import DreamDLM
from codila_engine.train.adapt import dream_tokenizer, export_dream, load_adapted, masked_top1, new_adapted, train_adapt
from codila_engine.train.loop import LoopConfig
from codila_engine.train.masking import DlmNoise
from codila_engine.train.sequences import SequenceData
from tiny_models import CORPUS, build_qwen_like_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_qwen_like_base(tmp_path_factory.mktemp("adapt"))


def sequences(tokenizer, seq_len: int = 64) -> SequenceData:
    ids = [i for text in CORPUS * 12 for i in tokenizer.encode(text)]
    n = len(ids) // seq_len
    return SequenceData(
        torch.tensor(ids[: n * seq_len], dtype=torch.int32),
        torch.arange(n) * seq_len,
        torch.full((n,), seq_len),
        torch.zeros(n, dtype=torch.long),
        seq_len,
        tokenizer.pad_token_id,
    )


def run(base, out, steps: int, resume: bool = False):
    folder, tokens = base
    tok = dream_tokenizer(folder, tokens)
    data = sequences(tok)
    cfg = LoopConfig(
        out=out, steps=steps, batch_size=2, lr=1e-2, val_every=2, val_batches=1, resume=resume, progress=False
    )
    return train_adapt(
        tok,
        folder,
        data,
        data,
        cfg,
        device=torch.device("cpu"),
        dtype=torch.float32,
        rank=4,
        mask_lr=1e-2,
        noise=DlmNoise(),
        curve_windows=2,
        tokens=tokens,
    )


def killed_in_step_3_then_resumed(monkeypatch, module, loss_name: str, run_to_4):
    """Run `run_to_4()` with `module.<loss_name>` interrupted in training step 3, then resume it."""
    real, calls = getattr(module, loss_name), []

    def killed_in_step_3(model, *args, **kwargs):
        calls.append(model.training)
        if calls.count(True) == 3:
            raise KeyboardInterrupt
        return real(model, *args, **kwargs)

    monkeypatch.setattr(module, loss_name, killed_in_step_3)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        run_to_4()
    monkeypatch.setattr(module, loss_name, real)
    return run_to_4(resume=True)


def test_dream_tokens_take_the_placeholders_ids(base):
    folder, tokens = base
    tok = dream_tokenizer(folder, tokens)
    assert tok.mask_token_id == tokens["<|mask|>"] and tok.bos_token_id == tokens["<|beginoftext|>"]
    assert tok.encode("<|mask|>x")[0] == tokens["<|mask|>"]  # one token, not spelled out
    with pytest.raises(ValueError, match="not a free placeholder"):
        dream_tokenizer(folder, {"<|beginoftext|>": 5, "<|mask|>": 6})


def test_resumed_training_follows_the_uninterrupted_loss_curve(base, tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    whole = run(base, tmp_path / "whole", steps=4)
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    curve = [r for r in log if r["event"] == "val"]
    assert [r["step"] for r in curve] == [2, 4] and all(0 <= r["span-32"] <= 1 for r in curve)

    import codila_engine.train.adapt as adapt

    rest = killed_in_step_3_then_resumed(
        monkeypatch, adapt, "dlm_loss", lambda **kw: run(base, tmp_path / "cut", 4, **kw)
    )
    assert rest.step == 4 and rest.losses == pytest.approx(whole.losses[2:], rel=1e-4)

    from codila_engine.cli import main

    assert main(["train", "dlm-curve", "--run", str(tmp_path / "whole"), "--out", str(tmp_path / "c.png")]) in (0, None)
    assert (tmp_path / "c.png").stat().st_size > 1000

    # dlm-probe on the run's cached held-out windows gives the curve's own numbers for its checkpoint
    data = sequences(dream_tokenizer(*base))
    cache = tmp_path / "whole" / "data"
    cache.mkdir()
    one_more = torch.cat([data.tokens, data.tokens[:1]])  # packed() keeps (len - 1) // L windows: all of them
    SequenceData(one_more, data.starts, data.lengths, data.target_starts, data.seq_len, data.pad_id).save(
        cache / "held_out-64.safetensors", "any"
    )
    probe = ["train", "dlm-probe", "--run", str(tmp_path / "whole"), "--adapter", str(tmp_path / "whole" / "last")]
    main([*probe, "--windows", "2", "--seq-len", "64", "--dtype", "float32", "--profile"])
    probed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: probed[k] for k in ("random-15", "random-50", "span-32")} == pytest.approx(
        {k: curve[-1][k] for k in ("random-15", "random-50", "span-32")}
    )
    # --profile: span-32 position by position; over the positions it averages to span-32 itself
    by_position, entropy = probed["span-32 top-1 by position"], probed["span-32 entropy by position"]
    assert len(by_position) == len(entropy) == 32 and all(e > 0 for e in entropy)
    assert sum(by_position) / 32 == pytest.approx(probed["span-32"], abs=1e-3)
    assert all(f.stat().st_size < 50e6 for f in (tmp_path / "whole" / "best").iterdir())  # shippable files


def test_export_is_a_dream_folder_with_the_adapters_applied(base, tmp_path):
    folder, tokens = base
    run(base, tmp_path / "run", steps=2)
    trained = load_adapted(tmp_path / "run" / "best", folder, torch.device("cpu"), torch.float32, tokens).eval()
    untrained = new_adapted(folder, torch.device("cpu"), torch.float32, rank=4, tokens=tokens).eval()
    dlm = DreamDLM.load(
        export_dream(tmp_path / "run" / "best", folder, tmp_path / "dream", torch.float32, tokens), dtype=torch.float32
    )
    assert dlm.mask_id == tokens["<|mask|>"] and dlm.model.config.is_causal is False
    ids = torch.tensor(dream_tokenizer(folder, tokens).encode("def add(a, b):\n    return a + b\n"))
    ids[5:9] = tokens["<|mask|>"]
    positions = torch.arange(5, 9)

    def head(model):
        with torch.no_grad():
            hidden = model.model(input_ids=ids[None]).last_hidden_state[0]
            return model.lm_head(hidden[positions - 1]).float()

    exported = dlm.marginal_logits(ids, positions)
    assert torch.allclose(exported[:, : tokens["<|mask|>"]], head(trained)[:, : tokens["<|mask|>"]], atol=1e-3)
    assert not torch.allclose(head(trained), head(untrained), atol=1e-3)  # training changed what it predicts
    assert 0 <= masked_top1(trained, ids[None].repeat(2, 1).long()[:, :12].contiguous().repeat(1, 4), "random-50") <= 1


def test_warm_start_from_a_checkpoint_continues_from_its_weights(base, tmp_path):
    folder, tokens = base
    run(base, tmp_path / "first", steps=2)
    tok = dream_tokenizer(folder, tokens)
    data = sequences(tok)
    cfg = LoopConfig(out=tmp_path / "warm", steps=1, batch_size=2, lr=1e-9, val_every=0, val_batches=1, progress=False)
    train_adapt(
        tok,
        folder,
        data,
        data,
        cfg,
        device=torch.device("cpu"),
        dtype=torch.float32,
        rank=4,
        mask_lr=1e-9,
        noise=DlmNoise(),
        curve_windows=2,
        tokens=tokens,
        init=tmp_path / "first" / "best",
    )
    first = load_adapted(tmp_path / "first" / "best", folder, torch.device("cpu"), torch.float32, tokens)
    warm = load_adapted(tmp_path / "warm" / "last", folder, torch.device("cpu"), torch.float32, tokens)
    for (name, a), (_, b) in zip(first.named_parameters(), warm.named_parameters()):
        if a.requires_grad:  # one step at lr 1e-9 from the same weights: the same weights
            assert torch.allclose(a, b, atol=1e-6), name
