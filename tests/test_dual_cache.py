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
    changed = ids.clone()
    changed[start] = 5  # a commit inside the window: the window is recomputed, the rest is stale
    approx = cached.marginal_logits(changed, positions[1:])
    assert not torch.allclose(approx, exact[1:], atol=1e-4)  # the window saw the new token


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
    with pytest.raises(ValueError, match="option dual_cache: must be >= 0 iterations"):
        DecodeConfig(dual_cache=-1)
