"""--decoder dream against a transcription of Dream's `_sample` (alg="entropy") on fixed logits."""

import pytest
import torch
import torch.nn.functional as F

from codila_engine.decoding.canvas import Canvas
from codila_engine.config import DecodeConfig
from codila_engine.decoding.loop import Decoding
from codila_engine.decoding.dream import DreamSampler, dream_filter, dream_sample, transfer_count
from codila_engine.sampling import top_p_filter

V, MASK = 50, 49


def reference_sample(logits, temperature, top_p, top_k):
    """Dream's sample_tokens(neg_entropy=True) at temperature 0, as its source reads."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cumulative > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = 0
        mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, sorted_indices, remove)
        logits = logits.masked_fill(mask, torch.finfo(logits.dtype).min)
    if top_k is not None:
        logits = logits.masked_fill(logits < torch.topk(logits, top_k)[0][..., -1, None], torch.finfo(logits.dtype).min)
    probs = torch.softmax(logits, dim=-1)
    confidence, x0 = probs.max(dim=-1)
    return torch.sum(probs * torch.log(probs + 1e-10), dim=-1), x0


def reference_generate(table, n, steps, eps, top_p, top_k):
    """Dream's loop over one row of n masks with fixed per-position logits `table` [n, V]."""
    x = torch.full((n,), MASK)
    timesteps = torch.linspace(1, eps, steps + 1)
    order = []
    for i in range(steps):
        mask_index = x == MASK
        confidence, x0 = reference_sample(table[mask_index], 0.0, top_p, top_k)
        count = (
            int(mask_index.sum() * (1 - timesteps[i + 1] / timesteps[i])) if i < steps - 1 else int(mask_index.sum())
        )
        full = torch.full((n,), -torch.inf)
        full[mask_index] = confidence
        if count > 0:
            picked = torch.topk(full, count).indices
            candidates = torch.full((n,), MASK)
            candidates[mask_index] = x0
            x[picked] = candidates[picked]
            order.append(sorted(picked.tolist()))
        else:
            order.append([])
    return x.tolist(), order


class FixedMarginals:
    """A DLM whose marginal at each span position is fixed, whatever the canvas holds."""

    def __init__(self, table, start):
        self.table, self.start = table, start

    def marginal_logits(self, ids, positions):
        return self.table[positions - self.start].clone()


@pytest.mark.parametrize("steps, top_p, top_k", [(12, 1.0, 0), (5, 0.9, 0), (3, 0.7, 5), (30, 1.0, 3)])
def test_dream_decoder_commits_what_dream_commits_step_by_step(steps, top_p, top_k):
    torch.manual_seed(steps)
    n = 12
    table = torch.randn(n, V) * 3
    table[:, MASK] = float("-inf")  # the DLM never predicts the mask
    expected_ids, expected_order = reference_generate(table, n, steps, 1e-3, top_p, top_k or None)
    canvas = Canvas([1, 2], [3], n, 4, mask_id=MASK, eos_id=0)  # infilling: no EOS cut
    cfg = DecodeConfig(
        decoder="dream", block_size=4, max_new_tokens=n, temperature=0, top_p=top_p, top_k=top_k, steps=steps
    )
    sampler = DreamSampler(FixedMarginals(table, canvas.start), canvas, cfg, None)
    events = list(Decoding(sampler, canvas, lambda ids: "", "~", decoder="dream"))
    assert [sorted(e.positions) for e in events] == expected_order[: len(events)]
    assert len(events) == steps  # one DLM forward per step, committing none on some
    assert canvas.span_ids() == expected_ids


def test_confidence_is_the_negative_entropy_of_the_filtered_distribution():
    torch.manual_seed(0)
    logits = torch.randn(6, V)
    for top_p, top_k in ((1.0, 0), (0.8, 0), (0.95, 4)):
        confidence, ids = dream_sample(logits, 0.0, top_p, top_k, None)
        ref_conf, ref_ids = reference_sample(logits, 0.0, top_p, top_k or None)
        assert torch.allclose(confidence, ref_conf) and torch.equal(ids, ref_ids)


def test_top_p_boundary_differs_from_the_baseline_as_documented():
    probs = torch.tensor([0.5, 0.3, 0.2])
    logits = probs.log()
    kept_by_dream = dream_filter(logits, 0.0, 0.8, 0) > torch.finfo(logits.dtype).min
    kept_by_baseline = top_p_filter(logits, 0.8) > float("-inf")
    assert kept_by_dream.tolist() == [True, True, True]  # mass before the third is 0.8 <= 0.8
    assert kept_by_baseline.tolist() == [True, True, False]  # the baseline keeps it only if < 0.8


def test_schedule_commits_everything_by_the_last_step():
    for masked, steps in ((64, 64), (64, 8), (10, 3), (5, 20)):
        left, counts = masked, []
        for i in range(steps):
            counts.append(transfer_count(left, i, steps, 1e-3))
            left -= counts[-1]
        assert left == 0 and counts[-1] >= 0 and all(c >= 0 for c in counts)


def test_dream_decoder_runs_from_the_engine(engine):
    result = engine.decode(
        "def add(a, b):\n", "", DecodeConfig(decoder="dream", max_new_tokens=8, steps=4, temperature=0)
    ).run()
    assert result.decoder == "dream" and result.stats.iterations <= 4 and not result.cancelled


def test_im_end_ends_a_completion_like_eos(tmp_path):
    from codila_engine.models.checkpoint import load_tokenizer
    from codila_engine.engine import turn_ends
    from tiny_models import build_fim_model

    tok = load_tokenizer(build_fim_model(tmp_path))
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert turn_ends(tok) == (im_end,)
    canvas = Canvas([1], [], 8, 4, mask_id=MASK, eos_id=0, more_ends=turn_ends(tok))
    filled = canvas.commit([2], [im_end])
    assert filled == list(range(3, 8)) and canvas.visible() == [None, None]  # the text ends at <|im_end|>
