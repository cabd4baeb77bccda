import "./stub";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import * as vscode from "vscode";
import * as stub from "./vscode";

const root = join(__dirname, "..", "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

async function activateFrom(modulePath: string) {
  stub.resetStub();
  stub.setSetting("serverCommand", "/nonexistent/codila-lsp");
  const extension = require(modulePath);
  const context = { subscriptions: [] as vscode.Disposable[], extension: { packageJSON: pkg } };
  await extension.activate(context);
  return { extension, context };
}

for (const [name, modulePath] of [
  ["the compiled modules", join(root, "out", "extension.js")],
  ["the esbuild bundle", join(root, "dist", "extension.js")],
] as const) {
  test(`activation (${name}): commands registered, a missing server reported once in the status bar`, { skip: !existsSync(modulePath) && "run `npm run bundle` first" }, async () => {
    const { extension, context } = await activateFrom(modulePath);
    for (const { command } of pkg.contributes.commands) {
      stub.recorded.executed.length = 0;
      if (command === "codila.showMenu" || command === "codila.chooseDecoder" || command === "codila.restartServer") continue;
      await vscode.commands.executeCommand(command);
      assert.equal(stub.recorded.executed[0].command, command, `${command} runs`);
    }
    const errors = stub.recorded.messages.filter((m) => m.kind === "error");
    assert.equal(errors.length, 1, JSON.stringify(stub.recorded.messages));
    assert.match(errors[0].text, /cannot find the language server `\/nonexistent\/codila-lsp`.*codila\.serverCommand/);
    // the restart command retries and does not repeat the message... until the settings change
    await vscode.commands.executeCommand("codila.restartServer");
    assert.equal(stub.recorded.messages.filter((m) => m.kind === "error").length, 2, "a restart by hand says it again");
    for (const disposable of context.subscriptions) disposable.dispose();
    await extension.deactivate();
  });
}
