import pytest
import torch

from codila_engine.train.masking import (
    IGNORE,
    DlmNoise,
    block_mask_probability,
    codila_block_mask,
    dlm_mask,
    span_layout,
)

MASK, PAD = 1, 0
L = 64


def _batch(b: int, length: int = L, target_start: int = 0, real: int | None = None):
    ids = torch.randint(10, 100, (b, length))
    lengths = torch.full((b,), real if real is not None else length)
    ids[:, lengths[0] :] = PAD
    return ids, torch.full((b,), target_start), lengths


def _mask(noise: DlmNoise, b: int = 400, seed: int = 0, **kw):
    ids, starts, lengths = _batch(b, **kw)
    m = dlm_mask(
        ids, starts, lengths, mask_id=MASK, pad_id=PAD, generator=torch.Generator().manual_seed(seed), noise=noise
    )
    return ids, starts, m


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """Contiguous runs of True as (start, end)."""
    out, start = [], None
    for i, v in enumerate(row.tolist() + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    return out


@pytest.mark.parametrize("noise", [DlmNoise(0, 0), DlmNoise(1, 0), DlmNoise(0, 1), DlmNoise()])
def test_dlm_labels_weights_and_mask_agree(noise):
    ids, _, m = _mask(noise, target_start=5)
    masked = m.labels != IGNORE
    assert torch.equal(masked, m.noisy == MASK)
    assert torch.equal(masked, m.weights > 0)
    assert not masked[:, :5].any(), "the prompt region is never a target"
    assert torch.equal(m.noisy[~masked], ids[~masked]) or noise.pad_fraction > 0
    assert masked.any(1).float().mean() > 0.95


def test_position_zero_is_never_a_target():
    _, _, m = _mask(DlmNoise(0, 0), b=2000)
    assert not (m.labels[:, 0] != IGNORE).any()


def test_iid_rate_follows_t():
    """Each row is masked at rate t, t ~ U(eps, 1): recover t from the 1/(t n) weight."""
    n = L - 1
    _, _, m = _mask(DlmNoise(0, 0), b=3000)
    masked = (m.labels != IGNORE).float()
    has = masked.sum(1) > 0
    t = 1.0 / (m.weights.max(1).values[has] * n)
    rate = masked[has].sum(1) / n
    assert abs(float((rate - t).mean())) < 0.01
    assert abs(float(masked.sum(1).mean() / n) - 0.5) < 0.02  # E[t] = 1/2
    assert float(torch.corrcoef(torch.stack([t, rate]))[0, 1]) > 0.95


def test_span_mode_masks_few_contiguous_spans_with_unit_weight():
    _, _, m = _mask(DlmNoise(span_fraction=1.0, pad_fraction=0.0, max_spans=3))
    masked = m.labels != IGNORE
    for row in range(masked.shape[0]):
        assert 1 <= len(_runs(masked[row])) <= 3
    assert torch.allclose(m.weights.sum(1), torch.ones(masked.shape[0]))
    frac = masked.float().sum(1) / (L - 1)
    assert abs(float(frac.mean()) - 0.5) < 0.03


def test_span_layout_is_disjoint_and_exact():
    g = torch.Generator().manual_seed(1)
    for masked in [1, 5, 20, 40]:
        spans = span_layout(3, 40, masked, 3, g)
        assert sum(e - a for a, e in spans) == masked
        assert all(3 <= a < e <= 43 for a, e in spans)
        assert all(e1 < a2 for (_, e1), (a2, _) in zip(spans, spans[1:]))


def test_pad_mode_puts_pads_at_the_end_of_the_span_and_keeps_the_text():
    ids, _, m = _mask(DlmNoise(span_fraction=0.0, pad_fraction=1.0), real=48)
    masked = m.labels != IGNORE
    clean = torch.where(masked, m.labels, m.noisy)
    for row in range(ids.shape[0]):
        ((a, e),) = _runs(masked[row])
        span = clean[row, a:e].tolist()
        pads = len(span) - len([t for t in span if t != PAD])
        assert pads >= 1 and span[len(span) - pads :] == [PAD] * pads, "pads close the span"
        without = clean[row, : e - pads].tolist() + clean[row, e:].tolist()
        assert without == ids[row, : L - pads].tolist(), "the text around the pads is only shifted"
        assert not masked[row, :a].any() and not masked[row, e:].any()
    assert torch.allclose(m.weights.sum(1), torch.ones(ids.shape[0]))


def test_noise_rejects_impossible_mix():
    with pytest.raises(ValueError, match="sum to at most 1"):
        DlmNoise(span_fraction=0.7, pad_fraction=0.5)


def test_block_probability_formula():
    assert block_mask_probability(0.0) == pytest.approx(1e-3)
    assert block_mask_probability(1.0) == pytest.approx(1.0)
    assert block_mask_probability(0.5, eps=0.1) == pytest.approx(0.9 * 0.5 + 0.1)


def test_codila_blocks_are_aligned_labelled_and_at_least_one():
    b, bs, start = 300, 4, 7
    ids = torch.randint(10, 100, (b, 50))
    out = codila_block_mask(
        ids, torch.full((b,), start), block_size=bs, mask_id=MASK, generator=torch.Generator().manual_seed(0)
    )
    rows, starts = out.blocks[:, 0], out.blocks[:, 1]
    assert torch.all((starts - start) % bs == 0)
    assert torch.all(starts + bs <= start + (50 - start) // bs * bs), "a trailing partial block is never a target"
    assert set(rows.tolist()) == set(range(b))
    assert torch.equal(out.block_labels, ids[rows[:, None], starts[:, None] + torch.arange(bs)])
    masked = out.labels != IGNORE
    assert torch.equal(masked, out.noisy == MASK)
    assert torch.equal(out.labels[masked], ids[masked])
    assert int(masked.sum()) == len(out.blocks) * bs
    n_blocks = (50 - start) // bs
    expected = block_mask_probability(0.5)  # E[p] for t ~ U(0.2, 0.8)
    assert abs(len(out.blocks) / (b * n_blocks) - expected) < 0.03


def test_codila_falls_back_to_one_block():
    ids = torch.randint(10, 100, (200, 40))
    out = codila_block_mask(
        ids,
        torch.zeros(200, dtype=torch.long),
        block_size=8,
        mask_id=MASK,
        generator=torch.Generator().manual_seed(0),
        t_range=(0.0, 0.0),
    )
    assert torch.equal(torch.bincount(out.blocks[:, 0], minlength=200), torch.ones(200, dtype=torch.long))
    assert torch.all((out.blocks[:, 1] - 1) % 8 == 0), "blocks start at 1: position 0 is context"


def test_codila_rejects_a_region_without_a_block():
    with pytest.raises(ValueError, match="holds no block"):
        codila_block_mask(
            torch.ones(1, 10, dtype=torch.long),
            torch.tensor([8]),
            block_size=4,
            mask_id=MASK,
            generator=torch.Generator(),
        )


def test_span_tokens_sets_the_span_length_whatever_t_is():
    noise = DlmNoise(span_fraction=1.0, pad_fraction=0.0, max_spans=1, span_tokens=(4, 16))
    _, _, m = _mask(noise, b=2000)
    totals = (m.labels != IGNORE).sum(1)
    assert int(totals.min()) >= 4 and int(totals.max()) <= 16
    # log-uniform: as many spans of 4-8 tokens as of 8-16 (a t-driven length is mostly > 16 here)
    short, long = int(((totals >= 4) & (totals < 8)).sum()), int(((totals >= 8) & (totals <= 16)).sum())
    assert abs(short - long) < 0.15 * len(totals)
    assert torch.allclose(m.weights.sum(1), torch.ones(len(totals)))
    with pytest.raises(ValueError, match="LO <= HI"):
        DlmNoise(span_tokens=(8, 4))
