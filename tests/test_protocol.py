"""lsp_server/protocol.py declares everything codila adds to LSP: every method the server, the
evaluation client and the editors (their tests too) use is declared there, everything declared is
used, the server registers exactly the declared handlers, and the editors read only declared
fields. (tests/test_server.py checks the real server's messages against the declared shapes.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from lsp_wire import shape_problems
from lsprotocol import types

from lsp_server import protocol
from lsp_server.server import server

ROOT = Path(__file__).resolve().parent.parent
EDITORS = [
    *sorted((ROOT / "editors" / "vscode" / "src").rglob("*.ts")),
    *sorted((ROOT / "editors" / "nvim").rglob("*.lua")),
]
PYTHON = [p for p in sorted((ROOT / "lsp_server").glob("*.py")) if p.name != "protocol.py"]
PYTHON.append(ROOT / "codila_engine" / "eval" / "client.py")
DECLARED = {*protocol.REQUESTS, *protocol.NOTIFICATIONS} | protocol.HANDLED | protocol.BUILTIN | protocol.SENT

# a quoted method name ('', "", `` or a Lua ["..."]): a first part LSP (or codila) has, then /parts
_PREFIXES = {method.split("/")[0] for method in types.METHOD_TO_TYPES if "/" in method} | {"codila"}
_QUOTED = re.compile(r"""["'`]((?:\$|[A-Za-z]+)(?:/[A-Za-z]+)+)["'`]""")
# pygls' method for each LSP method: window_log_message, text_document_did_open_async, ...
_PYGLS = {
    re.sub(r"(?<=[a-z])(?=[A-Z])", "_", method.replace("/", "_")).lower(): method
    for method in types.METHOD_TO_TYPES
    if not method.startswith("$/")
}
_PYGLS["work_done_progress"] = types.PROGRESS  # pygls' $/progress sender


def quoted_methods(text: str) -> set[str]:
    return {name for name in _QUOTED.findall(text) if name.split("/")[0] in _PREFIXES}


def python_methods(path: Path) -> set[str]:
    """Methods a Python module names: quoted, as lsprotocol's or protocol.py's constants, or by
    calling pygls' method for them."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    names, modules = set(), set()  # what the module imports from protocol.py, and as what it imports it
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "lsp_server.protocol":
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "lsp_server":
            modules |= {alias.asname or alias.name for alias in node.names if alias.name == "protocol"}
    found = quoted_methods(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= quoted_methods(f'"{node.value}"')
        elif isinstance(node, ast.Name) and node.id in names:
            found |= quoted_methods(f'"{getattr(protocol, node.id)}"')
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            found |= quoted_methods(f'"{getattr(protocol, node.attr)}"')
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "types":
            value = getattr(types, node.attr, None)
            found |= {value} if isinstance(value, str) and value in types.METHOD_TO_TYPES else set()
        elif isinstance(node, ast.Attribute) and node.attr.removesuffix("_async") in _PYGLS:
            found.add(_PYGLS[node.attr.removesuffix("_async")])
    return found


def used() -> dict[Path, set[str]]:
    methods = {path: quoted_methods(path.read_text(encoding="utf-8")) for path in EDITORS}
    return methods | {path: python_methods(path) for path in PYTHON}


def test_the_scan_sees_methods_however_they_are_named():
    assert quoted_methods('x["codila/draft"] = 1; send(`$/progress`); "a/b.py"; "text/plain"') == {
        "codila/draft",
        "$/progress",
    }
    handlers, client = ROOT / "lsp_server" / "handlers.py", ROOT / "codila_engine" / "eval" / "client.py"
    assert {protocol.INFILL, types.TEXT_DOCUMENT_INLINE_COMPLETION} <= python_methods(handlers)
    assert {protocol.DRAFT, types.CANCEL_REQUEST, types.TEXT_DOCUMENT_DID_OPEN, types.SHUTDOWN} <= python_methods(
        client
    )
    assert {types.WINDOW_LOG_MESSAGE, types.PROGRESS} <= python_methods(ROOT / "lsp_server" / "server.py")
    assert (
        len(EDITORS) > 20
        and any(p.parent.name == "test" for p in EDITORS)
        and any(p.parent.name == "tests" for p in EDITORS)
    )


def test_every_method_used_is_declared():
    undeclared = [f"{path.relative_to(ROOT)}: {name}" for path, names in used().items() for name in names - DECLARED]
    assert undeclared == []


def test_every_declared_method_is_used_and_standard_ones_are_lsp_methods():
    assert DECLARED - set().union(*used().values()) == set()
    standard = protocol.HANDLED | protocol.BUILTIN | protocol.SENT
    assert standard <= set(types.METHOD_TO_TYPES) and not standard & {*protocol.REQUESTS, *protocol.NOTIFICATIONS}
    assert all(name.startswith("codila/") for name in [*protocol.REQUESTS, *protocol.NOTIFICATIONS])


def test_the_server_registers_exactly_the_declared_handlers():
    fm = server.protocol.fm
    assert set(fm.features) == set(protocol.REQUESTS) | protocol.HANDLED
    assert set(fm.commands) == set(protocol.COMMANDS)
    assert protocol.BUILTIN <= {*fm.builtin_features, types.CANCEL_REQUEST}  # pygls' JSON-RPC layer cancels
    assert set(server.protocol.custom) <= set(protocol.REQUESTS)
    assert set(server.protocol.commands) == set(protocol.COMMANDS)


def _ts_fields(path: Path, interface: str) -> set[str]:
    body = re.search(rf"interface {interface} \{{(.*?)\n\}}", path.read_text(encoding="utf-8"), re.S)
    assert body, f"no interface {interface} in {path}"
    return set(re.findall(r"^\s+(\w+)\??:", body.group(1), re.M))


def test_the_editors_read_declared_fields_run_declared_commands_and_know_a_failed_load():
    src = ROOT / "editors" / "vscode" / "src"
    assert _ts_fields(src / "drafts.ts", "Draft") == set(protocol.DraftParams.__annotations__)
    assert _ts_fields(src / "drafts.ts", "DecodeStats") <= set(protocol.DecodeStats.__annotations__)
    assert _ts_fields(src / "infill.ts", "InfillResult") <= set(protocol.InfillResult.__annotations__)
    plugin = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "editors" / "nvim" / "lua").rglob("*.lua"))
    read = set(re.findall(r"\bdraft\.(\w+)", plugin))
    assert read and read <= set(protocol.DraftParams.__annotations__)
    commands = set(re.findall(r'local \w+_COMMAND = "([\w.]+)"', plugin))  # what it runs with workspace/executeCommand
    assert commands and commands <= set(protocol.COMMANDS)
    failed = set(re.findall(r'value\.message == "(\w+)"', plugin))  # how it tells that loading failed
    assert failed == {protocol.FAILED}


@pytest.mark.parametrize(
    ("value", "shape", "problems"),
    [
        ({"start": {"line": 0, "character": 1}, "end": {"line": 0, "character": 2}}, protocol.Range, []),
        (
            {"start": {"line": 0, "character": 1.5}, "end": {"line": 0}},
            protocol.Range,
            ["params.start.character: expected int, got 1.5", "params.end.character: missing"],
        ),
        (
            {
                "textDocument": {"uri": "file:///a.py"},
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
                "singleLine": True,
            },
            protocol.InfillParams,
            [],
        ),
        (
            {"textDocument": {"uri": "file:///a.py"}, "range": None, "extra": 1},
            protocol.InfillParams,
            ["params.extra: not in InfillParams", "params.range: expected an object (Range), got None"],
        ),
        (
            ["file:///a.py", {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}],
            protocol.COMMANDS[protocol.INFILL_COMMAND][0],
            [],
        ),
        (None, protocol.REQUESTS[protocol.INFILL][1], []),
        (
            True,
            protocol.DraftParams.__annotations__["id"],
            ["params: expected int, got True", "params: expected str, got True"],
        ),
    ],
)
def test_shape_problems_name_what_differs(value, shape, problems):
    assert shape_problems(value, shape) == problems
