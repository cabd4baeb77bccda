"""The acceptance checks for a pair shipped in the package (codila_engine/assets/): within the
repository's size limits, loaded through the normal loaders when no folders are given, and able
to fill held-out Python so that it parses.

No pair ships yet (README: Training), so these run against the installed pair when there is one,
or against CODILA_PAIR=DLM_FOLDER:AR_FOLDER (how a candidate pair is checked before it is copied
into assets/), and are skipped otherwise. `model_folders`, which picks the pair, is tested always.
"""

import ast
import os
import sys
from pathlib import Path

import pytest

from codila_engine.prepare.folders import model_folders, shipped_models
from codila_engine.config import DecodeConfig

sys.path.insert(0, str(Path(__file__).parent / "data"))
from heldout_snippets import SNIPPETS  # noqa: E402

MB = 1 << 20


def candidate_pair() -> tuple[Path, Path] | None:
    if os.environ.get("CODILA_PAIR"):
        dlm, _, ar = os.environ["CODILA_PAIR"].partition(":")
        return Path(dlm), Path(ar)
    return shipped_models()


needs_pair = pytest.mark.skipif(
    candidate_pair() is None, reason="no pair installed in codila_engine/assets/ and CODILA_PAIR not set"
)


def test_model_folders_given_then_installed_pair_then_default_model(monkeypatch, tmp_path):
    pick = lambda *a, **k: (lambda m: (m.dlm, m.ar))(model_folders(*a, **k))  # noqa: E731
    assert pick("a", "b") == ("a", "b")
    assert pick("a", None) == ("a", None) and pick(None, "b", "fim") == (None, "b")  # one alone runs what it can
    with pytest.raises(ValueError, match="codila decoder needs --dlm and --ar: give --ar too"):
        model_folders("a", None, "codila")
    with pytest.raises(ValueError, match="fim decoder needs --ar: give --ar too"):
        model_folders("a", None, "fim")
    monkeypatch.setattr("codila_engine.prepare.folders.shipped_models", lambda: (tmp_path / "d", tmp_path / "r"))
    assert pick(None, None) == (str(tmp_path / "d"), str(tmp_path / "r"))
    assert pick("", "") == (str(tmp_path / "d"), str(tmp_path / "r"))  # unset $DLM / $AR
    monkeypatch.setattr("codila_engine.prepare.folders.shipped_models", lambda: None)
    monkeypatch.setattr("codila_engine.prepare.default_model.default_model_folder", lambda *a, **k: tmp_path / "qwen")
    monkeypatch.setattr(
        "codila_engine.prepare.default_model.adapted_folder", lambda kind, *a, **k: tmp_path / f"qwen-{kind}"
    )
    assert pick(None, None) == (None, str(tmp_path / "qwen")) and pick(None, None, "fim") == (
        None,
        str(tmp_path / "qwen"),
    )
    assert pick(None, None, "dream") == pick(None, None, "dlm") == (str(tmp_path / "qwen-dlm"), None)
    monkeypatch.setattr("codila_engine.prepare.source.adapted_source", lambda kind: None)  # no AR adapter ships
    with pytest.raises(ValueError, match="the codila decoder needs a DLM and a CoDiLA-finetuned AR"):
        model_folders(None, None, "codila")
    monkeypatch.setattr("codila_engine.prepare.source.adapted_source", lambda kind: kind)  # it ships
    assert pick(None, None, "codila") == (str(tmp_path / "qwen-dlm"), str(tmp_path / "qwen-ar"))


def test_cli_without_folders_or_default_model_says_how_to_get_it(monkeypatch, capsys):
    from codila_engine.cli import main
    from test_eval_table import without_default_model

    without_default_model(monkeypatch)
    assert main(["generate", "--prompt", "x = 1\n"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'codila[model]'" in err[0] and "--dlm/--ar" in err[0]
    assert main(["generate", "--dlm", "", "--ar", "", "--prompt", "x = 1\n"]) == 2  # README line 1, $DLM unset


@pytest.fixture(scope="module")
def pair_engine():
    from codila_engine.engine import Engine

    return Engine.load(*candidate_pair(), device="cpu")


@needs_pair
def test_pair_fits_the_repository_limits():
    files = [f for folder in candidate_pair() for f in folder.rglob("*") if f.is_file()]
    sizes = {str(f): f.stat().st_size for f in files}
    assert max(sizes.values()) <= 15 * MB, sizes
    assert sum(sizes.values()) <= 60 * MB, sizes


@needs_pair
def test_pair_loads_through_the_normal_loaders(pair_engine):
    assert pair_engine.dlm.model.config.is_causal is False  # Dream loader: bidirectional Qwen2
    assert type(pair_engine.ar.model).__name__ == "Qwen3ForCausalLM"
    assert pair_engine.dlm.mask_id == pair_engine.tokenizer.convert_tokens_to_ids("<|mask|>")


@needs_pair
def test_pair_fills_held_out_snippets_into_code_that_parses(pair_engine):
    """Snippets written for this test (none is in the training corpus); an empty fill does not
    parse, so a pass means the model wrote code that fits both sides."""
    cfg = DecodeConfig(block_size=4, mode="static", max_new_tokens=16)
    fills = {prefix: pair_engine.decode(prefix, suffix, cfg).run().text for prefix, suffix in SNIPPETS}

    def parses(prefix, suffix):
        try:
            ast.parse(prefix + fills[prefix] + suffix)
            return True
        except SyntaxError:
            return False

    assert sum(parses(p, s) for p, s in SNIPPETS) >= len(SNIPPETS) // 2, fills
