"""The approximate dual-cache DLM forward against the exact one."""

import pytest
import torch

from codila_engine.config import DecodeConfig
from codila_engine.decoding.dual_cache import DualCacheDLM

PREFIX = "def add(a, b):\n"
SUFFIX = "\nprint(add(1, 2))\n"


def _canvas_ids(engine, n_masks=8):
    ids = engine.encode(PREFIX) + [engine.dlm.mask_id] * n_masks + engine.encode(SUFFIX)
    return torch.tensor(ids), len(engine.encode(PREFIX))


def test_window_on_a_fresh_cache_is_exact(engine):
    ids, start = _canvas_ids(engine)
    positions = torch.arange(start, start + 4)
    exact = engine.dlm.marginal_logits(ids, positions)
    cached = DualCacheDLM(engine.dlm, refresh=10)
    torch.testing.assert_close(cached.marginal_logits(ids, positions), exact, rtol=1e-4, atol=1e-4)  # full
    torch.testing.assert_close(cached.marginal_logits(ids, positions), exact, rtol=1e-4, atol=1e-4)  # window


def test_window_recomputes_itself_and_leaves_the_rest_stale_until_the_refresh(engine):
    ids, start = _canvas_ids(engine)
    positions = torch.arange(start + 1, start + 4)
    window = torch.zeros(ids.shape[0], dtype=torch.bool)
    window[start : start + 4] = True  # the positions read for `positions` (one to the left), through the last
    cached = DualCacheDLM(engine.dlm, refresh=3)
    old = cached.marginal_logits(ids, positions)  # call 0: a full forward
    stale_keys = [k.clone() for k in cached.keys]
    changed = ids.clone()
    changed[start] = 5  # a commit inside the window
    exact = engine.dlm.marginal_logits(changed, positions)
    approx = cached.marginal_logits(changed, positions)  # call 1: the window only
    assert not torch.allclose(approx, old, atol=1e-4)  # the window saw the new token
    assert not torch.allclose(approx, exact, atol=1e-4)  # and attended to keys and values computed before it
    full = DualCacheDLM(engine.dlm, refresh=3)
    full.marginal_logits(changed, positions)
    for now, before in zip(cached.keys, stale_keys):
        assert torch.equal(now[:, :, ~window], before[:, :, ~window])  # outside the window: untouched
    # layer 0 reads only the tokens: its keys are exact everywhere, the window's recomputed with the new one
    torch.testing.assert_close(cached.keys[0], full.keys[0], rtol=1e-5, atol=1e-5)
    cached.marginal_logits(changed, positions)  # call 2: the window again
    torch.testing.assert_close(cached.marginal_logits(changed, positions), exact, rtol=1e-4, atol=1e-4)  # call 3: full


def test_refresh_one_decodes_exactly(engine):
    opts = dict(max_new_tokens=16, block_size=4, temperature=0)
    exact = engine.decode(PREFIX, SUFFIX, DecodeConfig(**opts)).run()
    approx = engine.decode(PREFIX, SUFFIX, DecodeConfig(dual_cache=1, **opts)).run()
    assert approx.ids == exact.ids


def test_stale_cache_still_decodes_the_whole_span(engine):
    result = engine.decode(PREFIX, SUFFIX, DecodeConfig(max_new_tokens=24, dual_cache=4, decoder="dlm")).run()
    assert result.stats.iterations == 6 and engine.dlm.mask_id not in result.ids


def test_refresh_must_be_positive(engine):
    with pytest.raises(ValueError, match="refresh >= 1"):
        DualCacheDLM(engine.dlm, 0)
    with pytest.raises(
        ValueError, match=r"option dual_cache: must be a whole number of iterations >= 1 \(0: exact\), got -1"
    ):
        DecodeConfig(dual_cache=-1)
