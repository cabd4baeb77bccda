"""The engine on tiny random-weight models with the real architectures (CPU)."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from safetensors.torch import load_file

from codila_engine.config import DecodeConfig
from codila_engine.engine import Engine
from codila_engine.models.vocab import VocabularyMismatch
from tiny_models import build_pair

PREFIX = "def add(a, b):\n"
SUFFIX = "\nprint(add(1, 2))\n"


def events_of(engine, prefix, suffix, **opts):
    dec = engine.decode(prefix, suffix, DecodeConfig(**opts))
    events = list(dec)
    return events, dec.result


def test_load_round_trip(tiny_pair, engine):
    dlm_dir, ar_dir = tiny_pair
    saved = load_file(str(dlm_dir / "model.safetensors"))
    state = engine.dlm.model.state_dict()
    assert saved.keys() <= state.keys()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert engine.dlm.model.config.is_causal is False
    ar_saved = load_file(str(ar_dir / "model.safetensors"))
    ar_state = engine.ar.model.state_dict()
    for name, tensor in ar_saved.items():
        assert torch.equal(ar_state[name], tensor), name
    assert engine.dlm.mask_id == engine.tokenizer.convert_tokens_to_ids("<|mask|>")
    assert engine.bridge.think_id == engine.ar.tokenizer.convert_tokens_to_ids("<think>")


def test_bidirectional_attention(engine):
    ids = torch.tensor(engine.encode("x = 1\ny = 2\nz = 3\n"))
    other = ids.clone()
    other[-1] = (other[-1] + 1) % 200
    h1, h2 = engine.dlm.hidden_states(ids), engine.dlm.hidden_states(other)
    first = torch.tensor([1])  # position 1's marginal is read at position 0
    assert not torch.allclose(engine.dlm.logits_at(h1, first), engine.dlm.logits_at(h2, first))


def test_logit_shift(engine):
    ids = torch.tensor(engine.encode("for i in range(10):\n"))
    full = engine.dlm.model(input_ids=ids[None]).logits[0]
    hidden = engine.dlm.hidden_states(ids)
    pos = torch.tensor([0, 1, 5, len(ids) - 1])
    got = engine.dlm.logits_at(hidden, pos)
    want = full[torch.tensor([0, 0, 4, len(ids) - 2])].clone()
    want[:, engine.dlm.mask_id] = float("-inf")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.isinf(got[:, engine.dlm.mask_id]).all()


def test_vocabulary_mismatch_names_ids(tmp_path):
    dlm_dir, ar_dir = build_pair(tmp_path, swap_ordinary=True)
    with pytest.raises(VocabularyMismatch, match=r"disagree on 2 ids both use; first: 100 \("):
        Engine.load(dlm_dir, ar_dir, device="cpu")


def test_vocabulary_bridge_drops_only_dlm_specials(engine):
    tok = engine.tokenizer
    keep = engine.bridge.keep
    for special in ("<|mask|>", "<|beginoftext|>"):
        assert not keep[tok.convert_tokens_to_ids(special)]
    assert keep[engine.dlm.eos_id]
    assert keep[: tok.convert_tokens_to_ids("<|endoftext|>")].all()


@pytest.mark.parametrize("n,b", [(12, 4), (10, 4), (6, 2)])
def test_static_commits_whole_blocks(engine, n, b):
    events, result = events_of(engine, PREFIX, SUFFIX, max_new_tokens=n, block_size=b)
    assert len(events) == math.ceil(n / b) == result.stats.iterations
    assert all(len(e.positions) == b and e.source == "ar" for e in events)
    for e in events:  # each commit is exactly one block
        assert e.positions[0] % b == 0 and list(e.positions) == list(range(e.positions[0], e.positions[0] + b))
    assert result.stats.tokens == math.ceil(n / b) * b


def test_dynamic_huge_threshold_commits_whole_blocks(engine):
    events, result = events_of(engine, PREFIX, SUFFIX, max_new_tokens=12, block_size=4, mode="dynamic", threshold=1e9)
    assert [len(e.positions) for e in events] == [4, 4, 4]
    assert all(e.source == "ar" for e in events)


def test_dynamic_zero_threshold_falls_back_to_dlm_tokens(engine):
    events, result = events_of(engine, PREFIX, SUFFIX, max_new_tokens=8, block_size=4, mode="dynamic", threshold=0.0)
    assert len(events) == 8
    assert all(len(e.positions) == 1 and e.source == "dlm" for e in events)
    # every commit extends a block's committed prefix
    committed: set[int] = set()
    for e in events:
        off = e.positions[0]
        assert all(o in committed for o in range(off - off % 4, off))
        committed.add(off)


def test_scope_bounds_candidates(engine, monkeypatch):
    seen = []
    original = engine.ar.decode_blocks

    def spy(inputs, forced, **kw):
        seen.append(inputs.shape[0])
        return original(inputs, forced, **kw)

    monkeypatch.setattr(engine.ar, "decode_blocks", spy)
    dec = engine.decode(PREFIX, SUFFIX, DecodeConfig(max_new_tokens=24, block_size=4, scope=2))
    open_blocks = set(range(6))
    for event in dec:
        block = event.positions[0] // 4
        assert block in sorted(open_blocks)[:2]
        open_blocks.discard(block)
    assert seen[:5] == [2, 2, 2, 2, 2] and seen[-1] == 1


def test_soft_and_top1_give_different_ar_inputs(engine, monkeypatch):
    captured = {}
    original = engine.ar.decode_blocks
    for how in ("soft", "top1"):

        def spy(inputs, forced, _how=how, **kw):
            captured.setdefault(_how, inputs.clone())
            return original(inputs, forced, **kw)

        monkeypatch.setattr(engine.ar, "decode_blocks", spy)
        engine.decode(PREFIX, SUFFIX, DecodeConfig(max_new_tokens=8, conditioning=how)).run()
    soft, top1 = captured["soft"], captured["top1"]
    assert soft.shape == top1.shape
    emb = engine.ar.embedding
    torch.testing.assert_close(soft[:, 0], emb[engine.bridge.think_id].expand_as(soft[:, 0]))
    torch.testing.assert_close(soft[:, -1], emb[engine.bridge.end_think_id].expand_as(soft[:, -1]))
    assert not torch.allclose(soft[:, 1:-1], top1[:, 1:-1])
    # top-1 inputs are rows of the embedding matrix; soft ones are mixtures
    dists = torch.cdist(top1[:, 1:-1].reshape(-1, emb.shape[1]), emb).min(1).values
    assert dists.max() < 1e-3
    dists = torch.cdist(soft[:, 1:-1].reshape(-1, emb.shape[1]), emb).min(1).values
    assert dists.min() > 1e-2


@pytest.mark.parametrize("decoder", ["codila", "dlm"])
def test_infilling_keeps_prefix_and_suffix(engine, decoder):
    cfg = DecodeConfig(max_new_tokens=8, decoder=decoder, mode="dynamic", threshold=0.5)
    dec = engine.decode(PREFIX, SUFFIX, cfg)
    before = dec.canvas.ids.clone()
    result = dec.run()
    after = dec.canvas.ids
    start, end = dec.canvas.start, dec.canvas.start + dec.canvas.span_length
    assert dec.canvas.span_length == 8
    assert torch.equal(before[:start], after[:start])
    assert torch.equal(before[end:], after[end:])
    assert (after[start:end] != engine.dlm.mask_id).all()
    assert result.ids == after[start:end].tolist()


@pytest.fixture
def prefer_eos(engine, monkeypatch):
    """Make the DLM (at span offsets >= from_offset) and, if asked, the AR predict EOS."""
    eos = engine.dlm.eos_id
    original = engine.dlm.logits_at
    handles = []

    def install(from_offset: int = 0, ar: bool = False):
        start = len(engine.encode(PREFIX))

        def logits_at(hidden, positions):
            out = original(hidden, positions).clone()
            out[(positions - start) >= from_offset, eos] = 1e4
            return out

        monkeypatch.setattr(engine.dlm, "logits_at", logits_at)
        if ar:

            def hook(module, args, output):
                output = output.clone()
                output[..., eos] = 1e4
                return output

            handles.append(engine.ar.model.lm_head.register_forward_hook(hook))

    yield install
    for handle in handles:
        handle.remove()


def test_eos_ends_completion(engine, prefer_eos):
    prefer_eos(ar=True)
    events, result = events_of(engine, PREFIX, "", max_new_tokens=16, block_size=4)
    assert len(events) == 1  # the first block is EOS and fills the rest of the span
    assert result.text == "" and result.stats.text_tokens == 0
    assert result.ids == [engine.dlm.eos_id] * 16


def test_eos_dropped_in_infilling(engine, prefer_eos):
    prefer_eos(from_offset=4)
    cfg = DecodeConfig(max_new_tokens=12, block_size=4, decoder="dlm", tokens_per_step=2)
    dec = engine.decode(PREFIX, SUFFIX, cfg)
    events = list(dec)
    result = dec.result
    assert len(events) == 6  # infilling decodes every position
    assert result.ids[4:] == [engine.dlm.eos_id] * 8
    assert result.text == engine.decode_ids(result.ids[:4])
    assert result.stats.text_tokens == 4
    assert events[-1].draft == result.text


def test_eos_in_codila_infilling_is_dropped(engine, prefer_eos):
    prefer_eos(ar=True)
    events, result = events_of(engine, PREFIX, SUFFIX, max_new_tokens=12, block_size=4)
    assert len(events) == 3 and result.ids == [engine.dlm.eos_id] * 12
    assert result.text == "" and events[-1].draft == ""


def test_eos_in_baseline_completion_cuts_text(engine, prefer_eos):
    prefer_eos(from_offset=6)
    events, result = events_of(engine, PREFIX, "", max_new_tokens=12, decoder="dlm", tokens_per_step=1)
    # EOS is the surest token, so it lands first and fills everything after it
    assert events[0].positions == (6,) and result.stats.iterations == 7
    assert result.ids[6:] == [engine.dlm.eos_id] * 6
    assert result.stats.text_tokens == 6


def test_cancel_returns_after_current_iteration(engine):
    cancel = threading.Event()
    dec = engine.decode(PREFIX, SUFFIX, DecodeConfig(max_new_tokens=16, block_size=4), cancel=cancel)
    seen = []
    for event in dec:
        seen.append(event)
        cancel.set()
    assert len(seen) == 1
    result = dec.result
    assert result.cancelled and result.stats.iterations == 1
    assert result.ids.count(engine.dlm.mask_id) == 12
    assert result.text == seen[0].text


def test_seed_reproducible(engine):
    opts = dict(max_new_tokens=12, block_size=4, temperature=1.0, top_p=1.0, mode="dynamic", threshold=3.0)
    a = engine.decode(PREFIX, SUFFIX, DecodeConfig(seed=7, **opts)).run()
    b = engine.decode(PREFIX, SUFFIX, DecodeConfig(seed=7, **opts)).run()
    c = engine.decode(PREFIX, SUFFIX, DecodeConfig(seed=8, **opts)).run()
    assert a.ids == b.ids
    assert a.ids != c.ids


def test_kv_cached_decoding_matches_full_recomputation(engine):
    torch.manual_seed(0)
    ar = engine.ar
    emb = ar.embedding
    inputs = torch.randn(3, 6, emb.shape[1]) * 0.05  # 3 blocks, B = 4, think-wrapped
    forced = torch.full((3, 4), -1)
    forced[1, :2] = torch.tensor([5, 9])
    drafts = ar.decode_blocks(inputs, forced, temperature=0, top_p=1, return_logits=True)
    assert drafts.ids[1, :2].tolist() == [5, 9]
    with torch.inference_mode():
        for j in range(4):
            seq = torch.cat([inputs, emb[drafts.ids[:, :j]]], dim=1)
            full = ar.model(inputs_embeds=seq).logits[:, -1]
            torch.testing.assert_close(drafts.logits[:, j], full, rtol=1e-4, atol=1e-4)


def test_ar_emits_only_shared_tokens(engine):
    inputs = torch.randn(4, 6, engine.ar.embedding.shape[1])
    drafts = engine.ar.decode_blocks(
        inputs, torch.full((4, 4), -1), allowed=engine.bridge.ar_allowed, temperature=1.0, top_p=1.0
    )
    assert engine.bridge.ar_allowed[drafts.ids].all()


def test_final_draft_equals_result(engine):
    for opts in (dict(), dict(mode="dynamic", threshold=2.0), dict(decoder="dlm")):
        events, result = events_of(engine, PREFIX, "", max_new_tokens=10, **opts)
        assert events[-1].draft == result.text and events[-1].masks == ()
        assert len(result.ids) == 12 and engine.decode_ids(result.ids).startswith(result.text)  # 10 in whole blocks


def test_each_placeholder_of_a_draft_comes_with_the_tokens_it_stands_for(engine):
    events, result = events_of(engine, PREFIX, SUFFIX, max_new_tokens=12, block_size=2)
    placeholder = DecodeConfig().placeholder
    for event in events:
        assert event.draft.count(placeholder) == len(event.masks)
        assert sum(event.masks) <= 12 - sum(len(e.positions) for e in events[: event.iteration])  # an EOS may end it
    assert events[-1].masks == ()


@pytest.mark.parametrize("decoder", ["dlm", "codila"])
def test_single_line_keeps_the_first_line_and_stops_once_it_is_settled(engine, decoder):
    """A single-line request keeps the first line of what a DLM decoder fills (with its line break
    where the span lies between line starts) and counts only the kept tokens. It stops as soon as
    that line is committed from the span's start through its line break, not at the span's end."""
    prefix, suffix = "def f(x):\n", "    return y\n"
    placeholder = DecodeConfig().placeholder
    cut_any = False
    for seed in range(64):
        if cut_any and seed >= 4:
            break
        opts = dict(decoder=decoder, max_new_tokens=16, block_size=4, seed=seed, temperature=1.0)
        decoding = engine.decode(prefix, suffix, DecodeConfig(**opts))
        events = list(decoding)
        full = decoding.result
        assert full is not None
        one = engine.decode(prefix, suffix, DecodeConfig(**opts, single_line=True)).run()
        if "\n" in full.text.rstrip("\n"):  # a line break before the end: something to cut
            cut_any = True
            assert one.text == full.text[: full.text.index("\n") + 1]
            assert one.stats.text_tokens < full.stats.text_tokens
            assert engine.decode_ids(full.ids[: one.stats.text_tokens]).startswith(one.text.rstrip("\n"))
        elif full.text.count("\n") <= 1:
            assert one.text == full.text and one.stats.text_tokens == full.stats.text_tokens
        settled = next((e.iteration for e in events if "\n" in e.draft.split(placeholder)[0]), len(events))
        assert one.stats.iterations == settled  # the same steps up to there, then no more (test_loop: earlier)
    assert cut_any, "no seed produced a line break: the test proves nothing"
