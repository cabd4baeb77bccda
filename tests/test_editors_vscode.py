"""The VS Code extension (editors/vscode) beyond its unit tests (tests/test_editors.py runs those):
its settings match the server's, it drives the real codila-lsp through the real
vscode-languageclient (VS Code itself stubbed: it cannot be downloaded here), and it packages into
a small .vsix.

The Node tests skip, saying what to install, without Node >= 20 and `cd editors/vscode && npm ci`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lsp_server import settings as server_settings

VSCODE = Path(__file__).resolve().parent.parent / "editors" / "vscode"
PACKAGE = json.loads((VSCODE / "package.json").read_text())
CLIENT_ONLY = {"enable", "triggerMode", "debounceMs", "liveDraft", "serverCommand", "serverArgs", "trace.server"}
NOT_OFFERED = {"placeholder"}  # the extension draws drafts by the server's default placeholder


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None or not (VSCODE / "node_modules" / "@types" / "vscode").is_dir():
        pytest.skip("needs Node >= 20 and `cd editors/vscode && npm ci`")
    return npm


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, cwd=VSCODE, **kwargs)


def _declared() -> set[str]:
    props = {}
    for section in PACKAGE["contributes"]["configuration"]:
        props.update(section["properties"])
    return {name.removeprefix("codila.") for name in props}


def test_vscode_settings_are_the_servers():
    offered = _declared() - CLIENT_ONLY
    for key in sorted(offered):
        try:
            _, ignored = server_settings.apply_options(server_settings.Settings(), {key: None})
        except server_settings.SettingsError:
            ignored = []  # known, just not null
        assert key not in ignored, f"codila.{key} is offered but codila-lsp does not know {key!r}"
    if hasattr(server_settings, "as_options"):
        known = set(server_settings.as_options(server_settings.Settings()))
    else:
        known = {*server_settings.DECODE_KEYS, *server_settings.MODEL_KEYS, "spanCaps"}
    missing = known - NOT_OFFERED - offered
    assert not missing, f"server settings the extension does not offer: {sorted(missing)}"


def test_vscode_extension_drives_the_real_server(tiny_pair):
    npm = _npm()
    dlm, ar = tiny_pair
    assert dlm.parent == ar.parent and (dlm.name, ar.name) == ("dlm", "ar")
    server = shutil.which("codila-lsp", path=str(Path(sys.executable).parent)) or f"{sys.executable} -m lsp_server"
    compiled = _run([npm, "run", "compile"])
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    env = {**os.environ, "CODILA_LSP": server, "CODILA_TEST_MODELS": str(dlm.parent)}
    done = _run(["node", "--test", "out/test/server.test.js"], env=env)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert re.search(r"^# pass 1$", report, re.MULTILINE) and re.search(r"^# fail 0$", report, re.MULTILINE), report


def test_vscode_extension_packages_small(tmp_path):
    npm = _npm()
    vsix = tmp_path / "codila.vsix"
    done = _run([npm, "run", "package", "--", "--out", str(vsix)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert vsix.stat().st_size < 300_000, (
        f"{vsix.stat().st_size} bytes"
    )  # 593 KB unbundled; ~200 KB with the docs images
    names = set(zipfile.ZipFile(vsix).namelist())
    for name in [
        "extension/dist/extension.js",
        "extension/package.json",
        "extension/readme.md",
        "extension/changelog.md",
        "extension/media/icon.png",
        "extension/LICENSE.txt",
    ]:
        assert name in names, sorted(names)
    assert not any(n.startswith(("extension/node_modules/", "extension/src/", "extension/out/")) for n in names), names
    assert PACKAGE["repository"]["url"] and PACKAGE["icon"] and PACKAGE["keywords"] and PACKAGE["categories"]
    assert "--allow-missing-repository" not in PACKAGE["scripts"]["package"]
