import "./stub";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import * as vscode from "vscode";
import { SUGGESTION_COMMANDS, registerCommands } from "../commands";
import { DECODERS, MenuState, chooseDecoder, menuItems, showMenu } from "../menu";
import * as stub from "./vscode";

const pkg = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
const noop = () => undefined;

function register(calls: string[] = []) {
  stub.resetStub();
  const handler = (name: string) => () => calls.push(name);
  return registerCommands({
    infill: handler("infill"), showMenu: handler("showMenu"), toggle: handler("toggle"),
    chooseDecoder: handler("chooseDecoder"), showLog: handler("showLog"), restartServer: handler("restartServer"),
  });
}

test("accept word / line and next / previous run VS Code's inline-suggestion actions", async () => {
  register();
  for (const [command, builtin] of [
    ["codila.acceptWord", "editor.action.inlineSuggest.acceptNextWord"],
    ["codila.acceptLine", "editor.action.inlineSuggest.acceptNextLine"],
    ["codila.nextSuggestion", "editor.action.inlineSuggest.showNext"],
    ["codila.previousSuggestion", "editor.action.inlineSuggest.showPrevious"],
    ["codila.trigger", "editor.action.inlineSuggest.trigger"],
  ]) {
    stub.recorded.executed.length = 0;
    await vscode.commands.executeCommand(command);
    assert.deepEqual(stub.recorded.executed.map((e) => e.command), [command, builtin]);
  }
});

test("the keybindings reach those commands while a suggestion is visible", () => {
  const bindings: { command: string; key: string; mac?: string; when: string }[] = pkg.contributes.keybindings;
  const byCommand = new Map(bindings.map((b) => [b.command, b]));
  assert.equal(byCommand.get("codila.acceptWord")?.key, "ctrl+right");
  assert.equal(byCommand.get("codila.acceptWord")?.mac, "cmd+right");
  assert.equal(byCommand.get("codila.acceptLine")?.key, "shift+tab");
  assert.equal(byCommand.get("codila.nextSuggestion")?.key, "alt+]");
  assert.equal(byCommand.get("codila.previousSuggestion")?.key, "alt+[");
  assert.equal(byCommand.get("codila.trigger")?.key, "alt+\\");
  for (const name of ["codila.acceptWord", "codila.acceptLine", "codila.nextSuggestion", "codila.previousSuggestion"]) {
    assert.match(byCommand.get(name)!.when, /(^|&& )inlineSuggestionVisible( &&|$)/, `${name} only while a suggestion shows`);
  }
  assert.match(byCommand.get("codila.acceptLine")!.when, /!suggestWidgetVisible/);
  assert.match(byCommand.get("codila.acceptLine")!.when, /!inSnippetMode/, "Shift+Tab keeps snippet navigation");
  assert.match(byCommand.get("codila.trigger")!.when, /!inlineSuggestionVisible/);
});

test("every contributed command is registered, and every registered one contributed", () => {
  const calls: string[] = [];
  const disposables = register(calls);
  const contributed = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
  const registered = [
    "codila.infill", "codila.showMenu", "codila.toggle", "codila.chooseDecoder", "codila.showLog", "codila.restartServer",
    ...Object.keys(SUGGESTION_COMMANDS),
  ].sort();
  assert.deepEqual(contributed, registered);
  assert.equal(disposables.length, registered.length);
  void vscode.commands.executeCommand("codila.infill");
  assert.deepEqual(calls, ["infill"]);
  const menus = pkg.contributes.menus["editor/context"].map((m: { command: string }) => m.command);
  assert.deepEqual(menus, ["codila.infill"]);
});

const state: MenuState = { enabled: true, manual: false, liveDraft: true, decoder: null, suggestions: null, running: true };

test("the status bar menu offers toggle, log, restart and decoder", () => {
  const labels = menuItems(state).map((i) => i.action);
  for (const action of ["toggle", "log", "restart", "decoder", "suggestions", "live-draft", "trigger-mode", "settings"]) {
    assert.ok(labels.includes(action as never), action);
  }
  assert.match(menuItems(state)[0].label, /off/);
  assert.match(menuItems({ ...state, enabled: false })[0].label, /on/);
  assert.match(menuItems({ ...state, running: false }).find((i) => i.action === "restart")!.label, /Start server/);
});

test("menu: toggling writes codila.enable; restart and log call through", async () => {
  stub.resetStub();
  let restarted = 0;
  let logs = 0;
  const deps = { state: () => state, title: () => "Ready", showLog: () => void logs++, restart: async () => void restarted++ };
  stub.answers.quickPick.push((items) => items.find((i: { action: string }) => i.action === "toggle"));
  await showMenu(deps);
  assert.deepEqual(stub.recorded.configUpdates, [{ key: "enable", value: false, target: stub.ConfigurationTarget.Global }]);
  stub.answers.quickPick.push((items) => items.find((i: { action: string }) => i.action === "restart"));
  await showMenu(deps);
  stub.answers.quickPick.push((items) => items.find((i: { action: string }) => i.action === "log"));
  await showMenu(deps);
  assert.deepEqual([restarted, logs], [1, 1]);
  await showMenu(deps); // dismissed
  assert.equal(stub.recorded.quickPicks.at(-1)!.options.placeHolder, "Ready");
});

test("choosing a decoder writes codila.decoder where it is set", async () => {
  stub.resetStub();
  assert.deepEqual(DECODERS.map((d) => d.value), [null, "auto", "codila", "dlm", "dream", "fim"]);
  stub.answers.quickPick.push((items) => items.find((i: { value: string }) => i.value === "fim"));
  await chooseDecoder(null);
  assert.deepEqual(stub.recorded.configUpdates.at(-1), { key: "decoder", value: "fim", target: stub.ConfigurationTarget.Global });
  stub.setSetting("decoder", "dlm", "workspace");
  stub.answers.quickPick.push((items) => items.find((i: { value: string }) => i.value === "codila"));
  await chooseDecoder("dlm");
  assert.deepEqual(stub.recorded.configUpdates.at(-1), { key: "decoder", value: "codila", target: stub.ConfigurationTarget.Workspace });
  void noop;
});
