"""The layout's one rule, checked: no module imports from a layer above its own.

Layers, bottom to top: settings and token math (config, sampling, options) -> models ->
decoding -> the Engine facade (and the package's own public names) -> training library -> model
preparation -> the tools (bench, eval, serve, every `cli` module and the `commands` it runs, the
language server). A test, so that a new import that reaches up fails here instead of starting a
cycle. The team server (codila_engine/serve) is a tool that only the command line and the language
server import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"config": 0, "sampling": 0, "options": 0, "models": 1, "decoding": 2, "engine": 3, "train": 4, "prepare": 5}
TOOLS = 6


def layer(module: str) -> int | None:
    parts = module.split(".")
    if (
        parts[0] == "lsp_server"
        or parts[-1] in ("cli", "commands")
        or (len(parts) > 1 and parts[1] in ("bench", "eval", "serve"))
    ):
        return TOOLS
    if parts[0] != "codila_engine":
        return None  # not ours
    return LAYERS["engine"] if len(parts) == 1 else LAYERS[parts[1]]  # the package itself: the public facade


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)


def test_every_package_module_has_a_layer():
    modules = [p for pkg in ("codila_engine", "lsp_server") for p in (ROOT / pkg).rglob("*.py")]
    assert len(modules) > 40
    for path in modules:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        assert layer(name) is not None, name


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for pkg in ("codila_engine", "lsp_server"):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for target, line in imports(path):
                t = layer(target)
                if t is not None and t > layer(name):
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert upward == []


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from codila_engine.engine import Engine\nimport codila_engine.decoding.loop\n")
    found = [(t, layer(t)) for t, _ in imports(bad)]
    assert found == [("codila_engine.engine", 3), ("codila_engine.decoding.loop", 2)]
    assert layer("codila_engine.models.ar") < layer("codila_engine.decoding.codila") < layer("codila_engine.engine")


def test_only_the_command_line_and_the_language_server_import_the_team_server():
    importers = []
    for pkg in ("codila_engine", "lsp_server"):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            if name.startswith("codila_engine.serve") or name.endswith("cli") or name.startswith("lsp_server"):
                continue
            importers += [f"{name} imports {t}" for t, _ in imports(path) if t.startswith("codila_engine.serve")]
    assert importers == []
