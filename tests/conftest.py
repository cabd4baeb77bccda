import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Tiny models compare tokens exactly across paths: float32 everywhere, in this process and in the
# language servers the tests start (the default, auto, picks bfloat16 on CPUs where it is faster).
os.environ.setdefault("CODILA_DTYPE", "float32")

from tiny_models import build_pair  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    return build_pair(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def engine(tiny_pair):
    from codila_engine.engine import Engine

    return Engine.load(*tiny_pair, device="cpu")


@pytest.fixture(scope="module")
def sandbox_or_unsafe():
    """Programs the tests trust run in the sandbox, or unisolated where there is none
    (tests/test_sandbox.py checks the isolation itself and the refusal)."""
    from codila_engine.eval import execution

    execution.allow_unsafe_exec(execution.sandbox_problem() is not None)
    yield
    execution.allow_unsafe_exec(False)
