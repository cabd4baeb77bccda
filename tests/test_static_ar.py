"""The static-shape AR decoder (the CUDA-graph fast path) against the plain KV-cached decoder.

On CPU the static decoder runs the same code eagerly; the CUDA-graph replay itself is untested here
(no GPU: see the README's "What is not tested here").
"""

import pytest
import torch

from codila_engine.config import DecodeConfig
from codila_engine.models.static_ar import StaticBlockDecoder
from tiny_models import sharpened_engine

PREFIX = "def add(a, b):\n"
SUFFIX = "\nprint(add(1, 2))\n"


@pytest.mark.parametrize("c,b", [(3, 4), (5, 2), (1, 8)])
def test_greedy_matches_plain_decoder(engine, c, b):
    torch.manual_seed(c * 10 + b)
    ar = engine.ar
    inputs = torch.randn(c, b + 2, ar.embedding.shape[1]) * 0.05
    forced = torch.full((c, b), -1)
    forced[0, : b // 2] = torch.arange(5, 5 + b // 2)
    allowed = engine.bridge.ar_allowed
    plain = ar.decode_blocks(inputs, forced, allowed=allowed, temperature=0, top_p=1)
    fast = StaticBlockDecoder(ar, batch=6, block_size=b, temperature=0, top_p=1, allowed=allowed)
    drafts = fast.decode_blocks(inputs, forced, allowed=allowed, temperature=0, top_p=1)
    assert torch.equal(drafts.ids, plain.ids)
    torch.testing.assert_close(drafts.entropy, plain.entropy, rtol=1e-4, atol=1e-4)
    again = fast.decode_blocks(inputs[:1], forced[:1], temperature=0, top_p=1)  # reused buffers
    assert torch.equal(again.ids, plain.ids[:1])


def test_sampling_is_seeded_and_respects_allowed(engine):
    ar = engine.ar
    allowed = engine.bridge.ar_allowed
    fast = StaticBlockDecoder(ar, batch=4, block_size=4, temperature=1.0, top_p=0.9, allowed=allowed)
    inputs = torch.randn(4, 6, ar.embedding.shape[1])
    free = torch.full((4, 4), -1)
    a = fast.decode_blocks(inputs, free, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(1))
    b = fast.decode_blocks(inputs, free, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(1))
    c = fast.decode_blocks(inputs, free, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.ids, b.ids) and not torch.equal(a.ids, c.ids)
    assert allowed[a.ids].all()


def test_wrong_shapes_are_refused(engine):
    fast = StaticBlockDecoder(engine.ar, batch=2, block_size=4, temperature=0, top_p=1)
    with pytest.raises(ValueError, match="built for <= 2 blocks of 4"):
        fast.decode_blocks(torch.zeros(3, 6, 64), torch.full((3, 4), -1), temperature=0, top_p=1)


@pytest.fixture(scope="module")
def sharp_engine(tiny_pair):
    return sharpened_engine(tiny_pair)


def test_engine_fast_path_commits_the_same_tokens(sharp_engine):
    opts = dict(max_new_tokens=24, block_size=4, temperature=0)
    plain = sharp_engine.decode(PREFIX, SUFFIX, DecodeConfig(**opts)).run()
    fast = sharp_engine.decode(PREFIX, SUFFIX, DecodeConfig(fast=True, **opts)).run()
    assert fast.ids == plain.ids and fast.stats.iterations == plain.stats.iterations == 6
    # dynamic mode at a threshold where blocks land in pieces (partial prefixes and DLM tokens)
    for tau in (1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 5.2, 5.4):
        dyn = DecodeConfig(mode="dynamic", threshold=tau, **opts)
        plain = sharp_engine.decode(PREFIX, SUFFIX, dyn).run()
        if plain.stats.iterations not in (6, 24):
            break
    else:
        pytest.fail("no threshold gave a mixed dynamic run")
    fast = sharp_engine.decode(PREFIX, SUFFIX, dyn.with_options(fast=True)).run()
    assert fast.ids == plain.ids and fast.stats.iterations == plain.stats.iterations


def test_fast_path_gives_the_same_tokens_only_when_greedy(engine):
    """What the README promises: --fast is token-identical at temperature 0; when sampling, each
    path is reproducible from its seed, but the two consume random numbers differently."""
    from codila_engine.config import DecodeConfig

    def ids(**options):
        return engine.decode("def add(a, b):\n", "", DecodeConfig(max_new_tokens=16, seed=3, **options)).run().ids

    assert ids(temperature=0) == ids(temperature=0, fast=True)
    assert ids(temperature=0.7, fast=True) == ids(temperature=0.7, fast=True)
    assert ids(temperature=0.7) != ids(temperature=0.7, fast=True)


def test_the_engine_keeps_only_the_most_recently_used_fast_decoders(engine):
    from codila_engine.config import DecodeConfig
    from codila_engine.engine import STATIC_DECODERS

    first = engine.static_decoder(DecodeConfig(block_size=2, fast=True))
    for b in range(3, 3 + STATIC_DECODERS):
        engine.static_decoder(DecodeConfig(block_size=b, fast=True))
    assert len(engine._static) == STATIC_DECODERS
    assert engine.static_decoder(DecodeConfig(block_size=2, fast=True)) is not first  # evicted, built anew
    again = engine.static_decoder(DecodeConfig(block_size=2, fast=True))
    assert engine.static_decoder(DecodeConfig(block_size=2, fast=True)) is again  # reused while recent
