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


def test_the_distillation_teacher_is_the_base_read_causally_with_the_adapters_off(base):
    from transformers import Qwen2ForCausalLM

    folder, tokens = base
    model = new_adapted(folder, torch.device("cpu"), torch.float32, rank=4, tokens=tokens).eval()
    with torch.no_grad():  # adapters that change the model (fresh ones compute exactly the base)
        for name, p in model.peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ids = torch.tensor([dream_tokenizer(folder, tokens).encode("def add(a, b):\n    return a + b\n")])
    rows, positions = torch.zeros(ids.shape[1], dtype=torch.long), torch.arange(ids.shape[1])
    plain = Qwen2ForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        expected = plain(input_ids=ids).logits[0]
    assert torch.allclose(model.base_logits(ids, rows, positions), expected, atol=1e-4)

    # the adapted model itself stays bidirectional and adapted after the teacher ran
    later = ids.clone()
    later[0, -1] = later[0, 1]
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[0]
        changed = model.model(input_ids=later).last_hidden_state[0]
        adapted = model.lm_head(hidden).float()
    assert not torch.allclose(hidden[0], changed[0], atol=1e-5)  # a late token reaches the first position
    assert not torch.allclose(adapted, expected, atol=1e-2)


def test_distill_mixes_the_teachers_soft_targets_into_the_masked_loss(base, tmp_path, capsys):
    from functools import partial

    from codila_engine.train.dlm_pretrain import dlm_loss

    folder, tokens = base
    tok = dream_tokenizer(folder, tokens)
    model = new_adapted(folder, torch.device("cpu"), torch.float32, rank=4, tokens=tokens).train()
    batch = sequences(tok).batch(torch.arange(2))
    loss = partial(dlm_loss, model, batch, mask_id=tokens["<|mask|>"], pad=tok.pad_token_id, noise=DlmNoise())

    def same_noise(**kw) -> torch.Tensor:
        return loss(torch.Generator().manual_seed(3), **kw).detach()

    def one_hot(clean, rows, positions):  # a teacher certain of the true next token: KL = cross-entropy
        return torch.nn.functional.one_hot(clean[rows, positions + 1], model.lm_head.out_features).float() * 1e4

    plain = same_noise()
    assert float(same_noise(teacher=one_hot, distill=1.0)) == pytest.approx(float(plain), rel=1e-4)
    assert float(same_noise(teacher=one_hot, distill=0.0)) == pytest.approx(float(plain), rel=1e-6)

    def uniform(clean, rows, positions):  # no preference: a different target, a different loss
        return torch.zeros(len(rows), model.lm_head.out_features)

    mixed = same_noise(teacher=uniform, distill=0.5)
    assert float(mixed) != pytest.approx(float(plain), rel=1e-3)
    model.eval()  # validation: the plain objective, whatever the teacher
    assert float(same_noise(teacher=uniform, distill=0.5)) == pytest.approx(float(same_noise()), rel=1e-6)

    with pytest.raises(ValueError, match="--distill 1.5"):
        train_adapt(
            tok, folder, sequences(tok), sequences(tok), LoopConfig(out=tmp_path, steps=1), device=torch.device("cpu"),
            dtype=torch.float32, rank=4, mask_lr=1e-3, noise=DlmNoise(), distill=1.5,
        )  # fmt: skip
    from codila_engine.cli import main

    argv = ["train", "dlm-adapt", "--data-dir", str(tmp_path), "--held-out-dir", str(tmp_path), "--out", str(tmp_path)]
    assert main([*argv, "--distill", "-0.1"]) == 2  # refused before the corpus is read
    assert "--distill -0.1: give a weight from 0" in capsys.readouterr().err
