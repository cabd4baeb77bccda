"""Batching across decodes on one replica (codila_engine/serve/batching.py), without Ray: the AR's
block decodes (BatchedAR) with the DLM's forwards (BatchedDLM), and a ReplicaEngine wiring both."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from codila_engine.config import DecodeConfig
from codila_engine.models.ar import BlockDrafts
from codila_engine.serve.batching import BatchedAR, BatchedDLM, _BlocksAsk
from tiny_models import sharpened_engine

PROMPTS = [
    "def add(a, b):\n",
    "for i in range(10):\n    print(i)\n" * 3,
    "class Point:\n    def __init__(self, x, y):\n",
    "import os\nprint(os.path.join('a', 'b'))\n" * 2,
]


@pytest.fixture(scope="module")
def sharp(tiny_pair):
    return sharpened_engine(tiny_pair, "float32")


def batched_engine(engine, wait_s: float = 0.05):
    """An engine on the same models whose DLM and AR calls go through batchers, as on a replica."""
    from codila_engine.engine import Engine

    dlm, ar = BatchedDLM(engine.dlm, wait_s=wait_s), BatchedAR(engine.ar, wait_s=wait_s)
    return Engine(dlm, ar, bridge=engine.bridge), dlm, ar


def block_inputs(engine, c: int, b: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(c, b + 2, engine.ar.embedding.shape[1], generator=g) * 0.5
    forced = torch.full((c, b), -1)
    forced[0, : b // 2] = torch.arange(5, 5 + b // 2)  # a block with committed tokens
    return inputs, forced


def gen(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(seed)


def run_together(n: int, work, contexts=()) -> list:
    """`work(i)` on n threads at once, each inside `contexts` (batchers' decoding()) entered before
    any of them starts, so every call waits for the others; results (or exceptions) by thread."""
    out: list = [None] * n
    start = threading.Barrier(n)

    def one(i: int) -> None:
        try:
            with contextlib_all(contexts):
                start.wait(30)
                out[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a batched call hung"
    return out


def contextlib_all(contexts):
    from contextlib import ExitStack

    stack = ExitStack()
    for batcher in contexts:
        stack.enter_context(batcher.decoding())
    return stack


# --- the block decodes themselves ----------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_a_batch_of_one_is_the_exact_unbatched_call(sharp, temperature):
    ar, allowed = sharp.ar, sharp.bridge.ar_allowed
    inputs, forced = block_inputs(sharp, 5, 4, 0)
    alone = ar.decode_blocks(inputs, forced, allowed=allowed, temperature=temperature, top_p=0.9, generator=gen(1))
    batched = BatchedAR(ar, wait_s=10.0)  # no decode running: a lone call never waits
    t0 = time.monotonic()
    drafts = batched.decode_blocks(
        inputs, forced, allowed=allowed, temperature=temperature, top_p=0.9, generator=gen(1)
    )
    assert time.monotonic() - t0 < 5
    assert torch.equal(drafts.ids, alone.ids) and torch.equal(drafts.entropy, alone.entropy)
    assert (batched.calls, batched.asks, batched.blocks, batched.shared) == (1, 1, 5, 0)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_merged_block_decodes_equal_separate_ones_and_draw_from_each_decodes_generator(sharp, temperature):
    ar, allowed = sharp.ar, sharp.bridge.ar_allowed
    batched = BatchedAR(ar)
    asks, alone = [], []
    for n, c in enumerate((3, 10, 1, 7)):
        inputs, forced = block_inputs(sharp, c, 4, n)
        asks.append(_BlocksAsk(inputs, forced, allowed, temperature, 0.9, gen(10 + n)))
        one = gen(10 + n)
        alone.append(
            (ar.decode_blocks(inputs, forced, allowed=allowed, temperature=temperature, top_p=0.9, generator=one), one)
        )
    merged = batched.forward(asks)
    for ask, drafts, (want, used) in zip(asks, merged, alone):
        assert torch.equal(drafts.ids, want.ids)
        torch.testing.assert_close(drafts.entropy, want.entropy, rtol=1e-5, atol=1e-5)
        if temperature > 0:  # the same random numbers were drawn from each decode's generator
            assert torch.equal(torch.rand(4, generator=ask.generator), torch.rand(4, generator=used))
    if temperature > 0:  # and the draws are each generator's: other seeds give other tokens
        reseeded = [_BlocksAsk(a.inputs, a.forced, allowed, temperature, 0.9, gen(99 + n)) for n, a in enumerate(asks)]
        other = batched.forward(reseeded)
        assert not all(torch.equal(x.ids, y.ids) for x, y in zip(other, merged))


class Recorder:
    """A BlockDecoder (not a LocalAR) that records its calls; each row's draft is the row's own tag."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: Exception | None = None
        self.embedding = torch.zeros(16, 3)
        self.running = threading.Event()  # a call of one row has begun
        self.gate: threading.Event | None = None  # calls of one row wait for it

    def decode_blocks(self, inputs, forced, *, allowed, temperature, top_p, generator) -> BlockDrafts:
        self.calls.append((forced.shape[0], forced.shape[1], temperature, top_p, allowed, generator))
        if self.gate is not None and forced.shape[0] == 1:
            self.running.set()
            assert self.gate.wait(60)
        if self.fail is not None:
            raise self.fail
        tags = inputs[:, 1:-1, 0].long()
        return BlockDrafts(tags, inputs[:, 1:-1, 1].float())


def tagged(tag: int, c: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.zeros(c, b + 2, 3)
    inputs[:, 1:-1, 0] = tag * 100 + torch.arange(c)[:, None] * 10 + torch.arange(b)[None]
    return inputs, torch.full((c, b), -1)


def test_only_compatible_calls_share_a_block_decode():
    mask = torch.ones(16, dtype=torch.bool)
    mask[3] = False
    other = mask.clone()
    other[5] = False
    asks = [  # (rows, B, temperature, top_p, allowed)
        (2, 4, 0.0, 1.0, mask),
        (3, 4, 0.0, 1.0, mask),
        (1, 4, 0.0, 1.0, mask.clone()),  # an equal mask, another tensor: merged
        (2, 2, 0.0, 1.0, mask),  # another block size
        (2, 4, 0.0, 0.9, mask),  # another top-p
        (2, 4, 0.0, 1.0, other),  # another mask
        (2, 4, 0.0, 1.0, None),  # no mask
    ]
    recorder = Recorder()
    batched = BatchedAR(recorder, wait_s=30.0)  # every call waits for all the others: one take groups them

    def work(i: int):
        c, b, t, p, allowed = asks[i]
        inputs, forced = tagged(i, c, b)
        return batched.decode_blocks(inputs, forced, allowed=allowed, temperature=t, top_p=p, generator=None)

    t0 = time.monotonic()
    out = run_together(len(asks), work, [batched])
    assert time.monotonic() - t0 < 20  # nobody waited out wait_s: all had asked
    for i, drafts in enumerate(out):
        assert isinstance(drafts, BlockDrafts), drafts
        assert torch.equal(drafts.ids, tagged(i, asks[i][0], asks[i][1])[0][:, 1:-1, 0].long())  # its own rows
    calls = sorted((c, b, t, p) for c, b, t, p, _, _ in recorder.calls)
    assert calls == [(2, 2, 0.0, 1.0), (2, 4, 0.0, 0.9), (2, 4, 0.0, 1.0), (2, 4, 0.0, 1.0), (6, 4, 0.0, 1.0)]
    assert (batched.calls, batched.asks) == (5, 7)

    # a sampled call on a decoder that is not a LocalAR runs alone, with its own generator
    generator = gen(5)
    inputs, forced = tagged(9, 2, 4)
    batched.decode_blocks(inputs, forced, allowed=mask, temperature=0.5, top_p=1.0, generator=generator)
    assert recorder.calls[-1][5] is generator and batched.calls == 5


def test_sampled_calls_share_a_batch_only_at_the_same_temperature(sharp):
    ar, allowed = sharp.ar, sharp.bridge.ar_allowed
    temperatures = [0.5, 0.9, 0.0, 0.5, 0.9, 0.0]
    data = [block_inputs(sharp, 3 + i % 2, 4, 20 + i) for i in range(6)]

    def call(decoder, i: int) -> BlockDrafts:
        inputs, forced = data[i]
        return decoder.decode_blocks(
            inputs, forced, allowed=allowed, temperature=temperatures[i], top_p=0.9, generator=gen(i)
        )

    alone = [call(ar, i) for i in range(6)]
    batched = BatchedAR(ar, wait_s=30.0)
    together = run_together(6, lambda i: call(batched, i), [batched])
    for mine, want in zip(together, alone):
        assert isinstance(mine, BlockDrafts), mine
        assert torch.equal(mine.ids, want.ids)  # a merge across temperatures would draw other tokens
    assert (batched.calls, batched.asks) == (3, 6)  # three pairs


def test_calls_do_not_wait_for_a_decode_whose_own_block_decode_is_running():
    recorder = Recorder()
    recorder.gate = threading.Event()
    batched = BatchedAR(recorder, wait_s=30.0)
    done: dict[int, BlockDrafts] = {}
    both_decoding = threading.Barrier(2)  # neither of the others asks before both are decoding

    def decode(i: int) -> None:
        if i > 0:  # the others start while the first decode's call (one row) runs
            assert recorder.running.wait(30)
        with batched.decoding():
            if i > 0:
                both_decoding.wait(30)
            inputs, forced = tagged(i, 1 if i == 0 else 2, 4)
            done[i] = batched.decode_blocks(inputs, forced, allowed=None, temperature=0.0, top_p=1.0, generator=None)

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(20)
    assert sorted(done) == [1, 2] and time.monotonic() - t0 < 20  # not wait_s: the first could not ask
    recorder.gate.set()
    threads[0].join(30)
    assert sorted(done) == [0, 1, 2]
    assert [call[:2] for call in recorder.calls] == [(1, 4), (4, 4)]  # the two others shared one call
    assert batched._busy == 0 and not batched._waiting


def test_an_error_in_a_batched_call_reaches_every_waiting_decode_and_none_hangs():
    recorder = Recorder()
    recorder.fail = RuntimeError("CUDA error: an illegal memory access")
    batched = BatchedAR(recorder, wait_s=30.0)

    def work(i: int):
        inputs, forced = tagged(i, 2, 4)
        return batched.decode_blocks(inputs, forced, allowed=None, temperature=0.0, top_p=1.0, generator=None)

    out = run_together(4, work, [batched])
    assert all(isinstance(x, RuntimeError) and "illegal memory" in str(x) for x in out), out
    assert len(recorder.calls) == 1 and recorder.calls[0][0] == 8  # one merged call failed, for all four
    recorder.fail = None  # the batcher serves on
    out = run_together(3, work, [batched])
    assert all(isinstance(x, BlockDrafts) for x in out) and not batched._waiting


# --- whole decodes -------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [dict(temperature=0.0), dict(temperature=0.7, seed=11)])
def test_concurrent_decodes_through_both_batchers_give_each_decodes_own_text(sharp, options):
    cfgs = [DecodeConfig(max_new_tokens=16 + 8 * (i % 2), block_size=4, **options) for i in range(len(PROMPTS))]
    alone = [sharp.decode(p, "", cfg).run() for p, cfg in zip(PROMPTS, cfgs)]
    engine, dlm, ar = batched_engine(sharp)

    def work(i: int):
        result = engine.decode(PROMPTS[i], "", cfgs[i]).run()
        return result, ar.shared

    out = run_together(len(PROMPTS), work, [dlm, ar])
    for (result, _), want in zip(out, alone):
        assert result.ids == want.ids and result.text == want.text
        assert result.stats.iterations == want.stats.iterations
    iterations = sum(r.stats.iterations for r in alone)
    assert ar.asks == iterations and dlm.canvases == iterations  # every block decode went through it
    assert ar.calls < ar.asks and sum(shared for _, shared in out) > 0  # and some ran together
    print(f"\n{iterations} block decodes of 4 concurrent decodes in {ar.calls} calls")


def test_the_fast_path_and_what_reads_the_ar_go_through_the_wrapper_unbatched(sharp):
    fast = DecodeConfig(max_new_tokens=16, temperature=0, fast=True)
    want = sharp.decode(PROMPTS[0], "", fast).run().ids
    engine, _, ar = batched_engine(sharp)
    assert engine.decode(PROMPTS[0], "", fast).run().ids == want
    assert ar.asks == 0  # the static decoder was built from the AR's own model and runs it alone
    for name in ("model", "tokenizer", "eos_id", "max_positions", "cache_keyword", "embedding"):  # fim's, too
        assert getattr(ar, name) is getattr(sharp.ar, name) or getattr(ar, name) == getattr(sharp.ar, name)


# --- a replica (replica.py, no Ray) --------------------------------------------------------------
@pytest.mark.parametrize("batching", [True, False])
def test_a_replica_batches_its_decodes_block_decodes_when_batching_is_on(tiny_pair, batching):
    from codila_engine.models.ar import LocalAR
    from codila_engine.serve.replica import EngineSpec, ReplicaEngine

    spec = EngineSpec(str(tiny_pair[0]), str(tiny_pair[1]), "tiny", device="cpu", dtype="float32", batching=batching)
    replica = ReplicaEngine(spec)
    assert isinstance(replica.engine.ar, BatchedAR if batching else LocalAR)
    settings = {"max_new_tokens": 16, "temperature": 0}

    async def one(i: int, options: dict) -> tuple[dict, dict]:
        records: list[dict] = []

        async def report(record: dict) -> None:
            records.append(record)

        message = {"prefix": PROMPTS[i % len(PROMPTS)], "settings": options}
        items = [item async for item in replica.decode(message, f"uid{i}", "alice", report)]
        assert items[-1]["type"] == "result", items[-1]
        return items[-1], records[0]

    async def together() -> list:
        plain = [one(i, settings) for i in range(4)]
        other = [one(4, {**settings, "fast": True}), one(5, {**settings, "decoder": "dlm"})]  # not batched
        return await asyncio.gather(*plain, *other)

    out = asyncio.run(together())
    info = replica.info()
    shared = [record["shared_ar_calls"] for _, record in out]
    assert all(record["status"] == "done" for _, record in out)
    assert shared[4:] == [0, 0]
    if batching:
        iterations = sum(record["iterations"] for _, record in out[:4])
        assert info["batched_ar_asks"] == iterations > info["batched_ar_calls"] and sum(shared) > 0
    else:
        assert info["batched_ar_asks"] == info["batched_ar_calls"] == 0 and sum(shared) == 0
    replica.pool.shutdown()
