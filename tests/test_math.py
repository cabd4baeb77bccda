"""Pure functions: entropy, sampling, soft conditioning, block selection, the canvas."""

from __future__ import annotations

import math

import pytest
import torch

from codila_engine.decoding.canvas import Canvas
from codila_engine.decoding.conditioning import ar_marginals, soft_tokens, think_wrap
from codila_engine.config import DecodeConfig
from codila_engine.sampling import entropy, sample, top_p_filter
from codila_engine.decoding.selection import confident_prefix, dynamic_choice, mean_open_entropy, static_choice


def test_entropy_uniform_and_onehot():
    assert entropy(torch.zeros(8)).item() == pytest.approx(math.log(8), rel=1e-6)
    logits = torch.full((5,), float("-inf"))
    logits[2] = 0.0
    assert entropy(logits).item() == 0.0


def test_top_p_keeps_smallest_set():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = torch.isfinite(top_p_filter(logits, 0.8))
    assert kept.tolist() == [True, True, False, False]
    assert torch.isfinite(top_p_filter(logits, 0.01)).sum() == 1  # always at least the top token


def test_sample_greedy_and_seeded():
    logits = torch.randn(6, 50)
    assert torch.equal(sample(logits, 0.0, 1.0, None), logits.argmax(-1))
    a = sample(logits, 1.0, 1.0, torch.Generator().manual_seed(3))
    b = sample(logits, 1.0, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_ar_marginals_drop_and_renormalise():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]])  # 5 DLM ids, AR shares the first 4
    keep = torch.tensor([True, True, False, True])  # id 2 is the mask
    mapped = ar_marginals(probs, keep)
    torch.testing.assert_close(mapped, torch.tensor([[0.1, 0.2, 0.0, 0.4]]) / 0.7)


def test_soft_tokens_are_expected_embeddings_and_eos_is_hard():
    emb = torch.randn(4, 3)
    keep = torch.tensor([True, True, True, True])
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.1, 0.0, 0.0, 0.9]])
    out = soft_tokens(probs, emb, keep, eos_id=3)
    torch.testing.assert_close(out[0], 0.5 * emb[0] + 0.5 * emb[1])
    torch.testing.assert_close(out[1], emb[3])  # argmax is EOS: hard EOS embedding
    top1 = soft_tokens(probs, emb, keep, eos_id=3, conditioning="top1")
    torch.testing.assert_close(top1[0], emb[0])
    with pytest.raises(ValueError, match="conditioning"):
        soft_tokens(probs, emb, keep, eos_id=3, conditioning="bogus")


def test_think_wrap_layout():
    emb = torch.randn(10, 3)
    blocks = torch.randn(2, 4, 3)
    x = think_wrap(blocks, emb, 7, 8)
    assert x.shape == (2, 6, 3)
    assert torch.equal(x[:, 0], emb[7].expand(2, 3)) and torch.equal(x[:, -1], emb[8].expand(2, 3))
    assert torch.equal(x[:, 1:-1], blocks)


def test_mean_open_entropy_ignores_committed():
    ent = torch.tensor([[9.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    committed = torch.tensor([1, 0])
    torch.testing.assert_close(mean_open_entropy(ent, committed), torch.tensor([2.0, 2.0]))


def test_static_choice_lowest_mean():
    ent = torch.tensor([[1.0, 1.0], [0.2, 0.4], [0.1, 2.0]])
    choice = static_choice(ent, torch.zeros(3, dtype=torch.long))
    assert (choice.row, choice.k, choice.from_dlm) == (1, 2, False)


def test_confident_prefix_longest_k():
    ent = torch.tensor([[0.1, 0.2, 0.9, 0.0], [5.0, 0.0, 0.0, 0.0], [7.0, 0.1, 0.1, 0.1]])
    committed = torch.tensor([0, 0, 1])
    k, mean = confident_prefix(ent, committed, tau=0.3)
    # row 0: means 0.1, 0.15, 0.4, 0.3 -> k = 4 (longest whose mean <= tau)
    # row 1: means 5, 2.5, 1.67, 1.25 -> k = 0; row 2 skips its committed first token -> k = 3
    assert k.tolist() == [4, 0, 3]
    torch.testing.assert_close(mean, torch.tensor([0.3, 5.0, 0.1]))


def test_dynamic_choice_prefers_longest_then_lowest():
    ent = torch.tensor([[0.1, 0.1, 2.0], [0.05, 0.05, 3.0], [0.3, 0.3, 0.3]])
    committed = torch.zeros(3, dtype=torch.long)
    choice = dynamic_choice(ent, committed, tau=0.2)
    assert (choice.row, choice.k, choice.from_dlm) == (1, 2, False)


def test_dynamic_choice_falls_back_to_one_dlm_token():
    ent = torch.tensor([[0.1, 5.0], [0.05, 9.0]])
    choice = dynamic_choice(ent, torch.zeros(2, dtype=torch.long), tau=0.2)
    assert (choice.row, choice.k, choice.from_dlm) == (1, 1, True)
    choice = dynamic_choice(ent, torch.tensor([1, 0]), tau=0.0)  # row 0's open token: entropy 5
    assert (choice.row, choice.k, choice.from_dlm) == (1, 1, True)


def _canvas(suffix=()):
    return Canvas([1, 2], list(suffix), 8, 4, mask_id=99, eos_id=0, pad_id=0)


def test_canvas_blocks_and_candidates():
    c = _canvas()
    assert c.num_blocks == 2 and c.candidates(1) == [0]
    c.commit([0, 1], [5, 6])
    assert c.committed_prefix(0) == 2 and c.open_blocks() == [0, 1]
    c.commit([2, 3], [7, 8])
    assert c.candidates(10) == [1]
    assert c.ids.tolist()[:6] == [1, 2, 5, 6, 7, 8]
    with pytest.raises(ValueError, match="already committed"):
        c.commit([0], [1])


def test_canvas_completion_eos_fills_rest():
    c = _canvas()
    filled = c.commit([4, 5], [0, 3])
    assert filled == [6, 7] and c.span_ids()[4:] == [0, 3, 0, 0]
    assert c.visible() == [None, None, None, None]
    assert c.draft(lambda ids: "".join(map(str, ids)), "_") == "_"


def test_canvas_infilling_drops_eos():
    c = _canvas(suffix=[42])
    assert c.commit([0, 1, 2, 3], [5, 0, 6, 0]) == []
    assert c.visible() == [5, 6, None, None, None, None]
    decode = lambda ids: "".join(f"<{i}>" for i in ids)  # noqa: E731
    assert c.draft(decode, "_") == "<5><6>_"
    c.commit([4, 5, 6, 7], [7, 0, 0, 0])
    assert c.text(decode) == "<5><6><7>" and c.done


def test_canvas_rejects_partial_blocks():
    with pytest.raises(ValueError, match="multiple of the block size"):
        Canvas([1], [], 6, 4, mask_id=9, eos_id=0)


def test_config_validation_and_rounding():
    assert DecodeConfig(max_new_tokens=10, block_size=4).span_tokens == 12
    assert DecodeConfig(block_size=4).k == 4 and DecodeConfig(tokens_per_step=1).k == 1
    with pytest.raises(ValueError, match="option mode: must be one of static, dynamic, got 'fast'"):
        DecodeConfig(mode="fast")
    with pytest.raises(ValueError, match="unknown decoding option"):
        DecodeConfig().with_options(blocksize=3)


def test_the_dlm_commits_on_its_own_only_ids_the_ar_shares():
    from codila_engine.models.vocab import VocabBridge, shared_only

    keep = torch.tensor([True, False, True, True])  # id 1 is DLM-only; ids 4, 5 lie beyond the AR's rows
    bridge = VocabBridge(keep=keep, ar_allowed=keep, eos_id=0, think_id=2, end_think_id=3)
    logits = torch.tensor([[0.0, 9.0, 1.0, 2.0, 8.0, 7.0]])
    out = shared_only(logits, bridge)
    assert out.argmax(-1).item() == 3 and torch.isinf(out[0, [1, 4, 5]]).all()
    assert torch.equal(out[0, [0, 2, 3]], logits[0, [0, 2, 3]])
