"""The CoDiLA AR objective: the same soft-token layout as decoding, and training lowers it."""

import torch

from codila_engine.models.ar import LocalAR
from codila_engine.decoding.codila import block_inputs
from codila_engine.train.ar_codila import CodilaTask, block_marginals, codila_loss, train_ar_codila
from codila_engine.train.loop import LoopConfig
from codila_engine.train.masking import codila_block_mask
from codila_engine.train.models import new_ar, new_dlm, save_ar, save_dream
from codila_engine.models.dlm import DreamDLM
from codila_engine.models.vocab import build_bridge
from test_train_pipeline import TINY, _mean, data, tokenizer  # noqa: F401  (module fixtures)


def _pair(tokenizer, tmp_path):
    torch.manual_seed(0)
    dlm_dir = save_dream(new_dlm(TINY, tokenizer), tokenizer, tmp_path / "dlm")
    ar_dir = save_ar(new_ar(TINY, tokenizer), tokenizer, tmp_path / "ar")
    return dlm_dir, ar_dir


def test_training_input_matches_decoding_input(tokenizer, data, tmp_path):
    dlm_dir, ar_dir = _pair(tokenizer, tmp_path)
    dlm = DreamDLM.load(dlm_dir, device=torch.device("cpu"))
    ar = LocalAR.load(ar_dir, device=torch.device("cpu"))
    bridge = build_bridge(
        dlm.tokenizer,
        ar.tokenizer,
        dlm_rows=dlm.vocab_rows,
        ar_rows=ar.embedding.shape[0],
        mask_id=dlm.mask_id,
        eos_id=dlm.eos_id,
    )
    batch = data[0].batch(torch.arange(2))
    g = torch.Generator().manual_seed(1)
    torch.randint(1, (1,), generator=g)  # the loss first draws the step's block size
    m = codila_block_mask(batch.ids, batch.target_starts, block_size=4, mask_id=dlm.mask_id, generator=g)
    probs = block_marginals(dlm, m.noisy, m.blocks, 4)
    # decoding computes the same marginals from the canvas of that row
    row, start = m.blocks[0].tolist()
    hidden = dlm.hidden_states(m.noisy[row])
    canvas_probs = torch.softmax(dlm.logits_at(hidden, torch.arange(start, start + 4)), -1)
    torch.testing.assert_close(probs[0], canvas_probs, rtol=1e-4, atol=1e-5)
    inputs, forced = block_inputs(
        probs[:1], m.noisy[row, start : start + 4][None], torch.zeros(1, dtype=torch.long), ar.embedding, bridge, "soft"
    )
    assert inputs.shape == (1, 6, TINY.hidden) and (forced == -1).all()
    # the loss sees exactly these inputs at positions 0..B+1
    seen = {}

    def record(module, args, kwargs):
        seen.setdefault("x", kwargs["inputs_embeds"].detach())

    hook = ar.model.model.register_forward_pre_hook(record, with_kwargs=True)
    task = CodilaTask(dlm, bridge, (4,))
    try:
        codila_loss(ar.model, batch, torch.Generator().manual_seed(1), task=task)
    finally:
        hook.remove()
    torch.testing.assert_close(seen["x"][0, :6], inputs[0], rtol=1e-5, atol=1e-6)
    assert seen["x"].shape[1] == 4 * 2 + 1  # <think> e_1..e_4 </think> y_1..y_3


def test_codila_training_lowers_the_loss(tokenizer, data, tmp_path):
    dlm_dir, ar_dir = _pair(tokenizer, tmp_path)
    cfg = LoopConfig(out=tmp_path / "run", steps=30, batch_size=8, lr=3e-3, val_every=10, val_batches=1, progress=False)
    result = train_ar_codila(tokenizer, *data, cfg, dlm_path=dlm_dir, init=ar_dir, block_sizes=(2, 4))
    assert _mean(result.losses[-5:]) < _mean(result.losses[:5]) - 1.0
    assert (cfg.out / "best" / "config.json").is_file()
    LocalAR.load(cfg.out / "best")  # a normal AR folder the engine loads
