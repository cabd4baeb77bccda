"""SETTINGS (codila_engine/config.py) declares every user setting once. The CLI's flags and the
server's keys and checks are made from it; the lists kept elsewhere are held to it here: the VS Code
extension's settings (editors/vscode/package.json), the Neovim plugin's defaults and vimdoc, and the
README's settings table. Each checker is also run on a copy that drifted, to show that it fails."""

from __future__ import annotations

import argparse
import copy
import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from codila_engine.config import SETTINGS, DecodeConfig, defaults
from codila_engine.options import add_decode_args, add_model_args, decode_config, flag
from lsp_server.settings import Settings, SettingsError, apply_options, as_options
from lsp_server.spans import SpanCaps

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
NVIM = ROOT / "editors" / "nvim"
JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}
BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
# the extension finds masked runs in drafts by the server's default placeholder (src/placeholders.ts)
VSCODE_OMITS = {"placeholder"}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _options(key: str, value) -> dict:
    """{key: value} as a client sends it: {"spanCaps": {"lineRest": 16}} for "spanCaps.lineRest"."""
    parent, _, name = key.rpartition(".")
    return {parent: {name: value}} if parent else {key: value}


# --- the declaration itself -----------------------------------------------------------------------


def test_each_setting_is_declared_once_whole_and_valid():
    keys = [s.key for s in SETTINGS if s.key]
    assert len(keys) == len(set(keys)), "a server key is declared twice"
    for record in {s.record for s in SETTINGS}:
        names = [s.name for s in SETTINGS if s.record == record]
        assert len(names) == len(set(names)), f"a {record} setting is declared twice"
    for s in SETTINGS:
        assert s.help and s.record in ("model", "decode", "caps", "infill", "server"), s
        bounded = any(getattr(s, bound) is not None for bound in BOUNDS)
        assert bounded == bool(s.rule), f"{s.name}: bounds and their words (rule) go together"
        assert not (s.zero and s.default != 0), f"{s.name}: 0 stands for something, so it is the default"
        assert s.default is not None or s.none, f"{s.name}: a null default says what it stands for"
        if s.key:
            assert s.problem(s.default) is None, f"{s.name}: the default fails its own check"


def test_the_records_hold_exactly_the_declared_settings_with_their_defaults():
    declared = [(s.name, s.type.__name__ + (" | None" if s.none else "")) for s in SETTINGS if s.record == "decode"]
    assert [(f.name, f.type) for f in fields(DecodeConfig)] == declared
    assert DecodeConfig() == DecodeConfig(**defaults("decode"))
    assert SpanCaps() == SpanCaps(**defaults("caps")), "lsp_server/spans.py's SpanCaps defaults differ from SETTINGS"
    nested: dict = {}
    for s in SETTINGS:
        if s.key:
            parent, _, name = s.key.rpartition(".")
            (nested.setdefault(parent, {}) if parent else nested)[name] = s.default
    assert as_options(Settings()) == nested  # what `codila/settings` answers before any change


def test_the_cli_has_a_flag_per_setting_with_its_default_and_makes_the_default_config():
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    add_decode_args(parser)
    actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings and a.dest != "help"}
    wanted = [s for s in SETTINGS if s.cli and s.record in ("model", "decode")]
    assert sorted(actions) == sorted(flag(s.name) for s in wanted)
    for s in wanted:
        assert "(default: " in (actions[flag(s.name)].help or ""), flag(s.name)
    assert decode_config(parser.parse_args([])) == DecodeConfig()


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.key], ids=lambda s: s.key)
def test_the_server_checks_every_key_and_names_it(setting):
    wrong = 5 if setting.type is str else "x"
    with pytest.raises(SettingsError, match=re.escape(f"invalid codila setting '{setting.key}': must be")):
        apply_options(Settings(), _options(setting.key, wrong))
    assert apply_options(Settings(), _options(setting.key, setting.default)) == (Settings(), [])


# --- VS Code: editors/vscode/package.json ---------------------------------------------------------


def vscode_drift(package: dict, client_keys: set[str]) -> list[str]:
    """How the extension's server settings differ from SETTINGS (nothing: they agree). Each is
    nullable with default null (left to the server), its description says the server's default."""
    props = {}
    for section in package["contributes"]["configuration"]:
        props.update(section["properties"])
    server = {
        name.removeprefix("codila."): p for name, p in props.items() if name.removeprefix("codila.") not in client_keys
    }
    wanted = {s.key.split(".")[0] for s in SETTINGS if s.key} - VSCODE_OMITS
    problems = [f"codila.{key}: not a server setting" for key in sorted(set(server) - wanted)]
    problems += [f"codila.{key}: missing" for key in sorted(wanted - set(server))]
    for s in SETTINGS:
        parent, _, child = (s.key or "").partition(".")
        if parent not in server:
            continue
        p, where = server[parent], f"codila.{s.key}"
        if child:  # a property of an object setting: its own type and default
            p = p.get("properties", {}).get(child, {})
            expected = {"type": JSON_TYPES[s.type], "default": s.default}
        else:
            expected = {"type": [JSON_TYPES[s.type], "null"], "default": None}
            text = p.get("description") or p.get("markdownDescription") or ""
            if f"Server default: {s.shown}." not in text:
                problems.append(f"{where}: its description should say 'Server default: {s.shown}.'")
        if s.choices:
            expected["enum"] = [*s.choices] + ([] if child else [None])
        for bound, name in BOUNDS.items():
            value = 0 if s.zero and bound == "ge" else getattr(s, bound)  # 0 is allowed, standing for s.zero
            if value is not None:
                expected[name] = value
        found = {k: p.get(k) for k in ("type", "default", "enum", *BOUNDS.values()) if k in p or k in expected}
        if found != expected:
            problems.append(f"{where}: {found} should be {expected}")
    return problems


def _client_keys() -> set[str]:
    """The settings the extension keeps to itself (src/settings.ts CLIENT_KEYS)."""
    source = re.search(r"CLIENT_KEYS = \[(.*?)\] as const", _text(VSCODE / "src" / "settings.ts"), re.DOTALL)
    assert source, "CLIENT_KEYS not found in editors/vscode/src/settings.ts"
    return set(re.findall(r'"([^"]+)"', source.group(1)))


def test_vscode_settings_match_the_schema():
    assert vscode_drift(json.loads(_text(VSCODE / "package.json")), _client_keys()) == []


def test_vscode_checker_sees_drift():
    package = copy.deepcopy(json.loads(_text(VSCODE / "package.json")))
    props = package["contributes"]["configuration"][1]["properties"]
    props["codila.blockSize"]["description"] = "Tokens per block. Server default: 8 tokens."
    props["codila.topP"]["maximum"] = 2
    props["codila.spanCaps"]["properties"]["lineRest"]["default"] = 12
    del props["codila.topK"]
    props["codila.bogus"] = {"type": ["string", "null"], "default": None}
    problems = "\n".join(vscode_drift(package, _client_keys()))
    for expected in (
        "codila.blockSize: its description",
        "codila.topP:",
        "codila.spanCaps.lineRest:",
        "codila.topK: missing",
        "codila.bogus: not a server setting",
    ):
        assert expected in problems, problems


# --- Neovim: the plugin's defaults (lua/codila/config.lua) and its vimdoc --------------------------


def nvim_drift(config_lua: str, vimdoc: str) -> list[str]:
    """The plugin sends `settings` as they are; by default none, so SETTINGS' defaults are in force.
    The vimdoc's list of setting names must name real keys."""
    problems = []
    if not re.search(r"^\s*settings = \{\},", config_lua, re.MULTILINE):
        problems.append("config.lua: the default `settings` should be {} (the server's defaults)")
    listed = re.search(r"The keys are the server's(.*?)\n\n", vimdoc, re.DOTALL)
    names = re.findall(r"`([A-Za-z*]+)`", listed.group(1)) if listed else []
    if not names:
        problems.append("codila.txt: no list of the server's keys under *codila-settings*")
    keys = {part for s in SETTINGS if s.key for part in s.key.split(".")}
    for name in names:
        if not any(re.fullmatch(name.replace("*", ".*"), key) for key in keys):
            problems.append(f"codila.txt: `{name}` is not a server setting")
    return problems


def test_nvim_defaults_and_docs_match_the_schema():
    assert nvim_drift(_text(NVIM / "lua" / "codila" / "config.lua"), _text(NVIM / "doc" / "codila.txt")) == []


def test_nvim_checker_sees_drift():
    config, doc = _text(NVIM / "lua" / "codila" / "config.lua"), _text(NVIM / "doc" / "codila.txt")
    drifted = nvim_drift(
        config.replace("settings = {},", "settings = { blockSize = 8 },"), doc.replace("`seed`", "`sed`")
    )
    assert drifted == [
        "config.lua: the default `settings` should be {} (the server's defaults)",
        "codila.txt: `sed` is not a server setting",
    ]


# --- the README's settings table ------------------------------------------------------------------


def readme_drift(readme: str) -> list[str]:
    """The table under "| key | value | default |": one row per server setting, its default as SETTINGS
    shows it (backticks aside)."""
    table = readme.split("| key | value | default |\n|---|---|---|\n", 1)
    if len(table) < 2:
        return ["README.md: no settings table"]
    rows = {}
    for line in table[1].split("\n\n", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[-1].replace("`", "")
    wanted = {s.key: s.shown for s in SETTINGS if s.key}
    problems = [f"README.md: `{key}` is not a server setting" for key in sorted(set(rows) - set(wanted))]
    problems += [f"README.md: no row for `{key}`" for key in sorted(set(wanted) - set(rows))]
    problems += [
        f"README.md: `{key}` default {rows[key]!r} should be {shown!r}"
        for key, shown in wanted.items()
        if key in rows and rows[key] != shown
    ]
    return problems


def test_readme_table_matches_the_schema():
    assert readme_drift(_text(ROOT / "README.md")) == []


def test_readme_checker_sees_drift():
    readme = _text(ROOT / "README.md")
    row = next(line for line in readme.splitlines() if line.startswith("| `scope` |"))
    drifted = readme.replace(row, row.replace("10 blocks", "12 blocks")).replace("| `topK` |", "| `topKK` |")
    assert readme_drift(drifted) == [
        "README.md: `topKK` is not a server setting",
        "README.md: no row for `topK`",
        "README.md: `scope` default '12 blocks' should be '10 blocks'",
    ]
