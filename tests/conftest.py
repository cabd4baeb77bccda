import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_pair  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    return build_pair(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def engine(tiny_pair):
    from codila_engine.engine import Engine

    return Engine.load(*tiny_pair, device="cpu")
