// The extension end to end against the real codila-lsp: the real vscode-languageclient (VS Code
// itself stubbed, see vscode.ts) starts the server with small models, and the test drives what a
// user does: wait for the models, ask for an inline suggestion, infill a selection, lose the
// server mid-decode. Runs when CODILA_LSP (the server command) and CODILA_TEST_MODELS (a folder
// with dlm/ and ar/) are set, as tests/test_editors_vscode.py does; skipped otherwise.

import "./stub";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as vscode from "vscode";
import * as stub from "./vscode";

const server = process.env.CODILA_LSP;
const models = process.env.CODILA_TEST_MODELS;
const skip = !server || !models ? "set CODILA_LSP and CODILA_TEST_MODELS (tests/test_editors_vscode.py does)" : false;

const SOURCE = [
  "def add(a, b):",
  "    total = a + b",
  "    return total",
  "",
  "",
  "def scale(values, factor):",
  "    result = []",
  "    for v in values:",
  "        result.append(v * factor)",
  "    return result",
  "",
].join("\n");

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 120_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("against codila-lsp: loading, inline suggestion with live drafts, infill, a server that dies", { skip, timeout: 600_000 }, async () => {
  stub.resetStub();
  const dir = mkdtempSync(join(tmpdir(), "codila vscode #"));
  const log = join(dir, "server.log");
  const [command, ...args] = server!.split(" ");
  stub.setSetting("serverCommand", command);
  stub.setSetting("serverArgs", [...args, "--log-level", "info", "--log-file", log]);
  stub.setSetting("dlm", join(models!, "dlm"));
  stub.setSetting("ar", join(models!, "ar"));
  stub.setSetting("device", "cpu");
  stub.setSetting("debounceMs", 0);
  stub.setSetting("blockSize", 2);
  stub.setSetting("trace.server", "messages");
  const document = new stub.TextDocument(stub.Uri.file(join(dir, "my #1 file.py")), SOURCE);
  const editor = new stub.TextEditor(document);
  stub.window.visibleTextEditors = [editor];
  stub.window.activeTextEditor = editor;
  stub.workspace.open(document);

  const extension = require("../extension");
  const pkg = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
  const context = { subscriptions: [] as vscode.Disposable[], extension: { packageJSON: pkg } };
  const status = () => stub.recorded.statusItems[0];
  const seen = new Set<string>();
  const watch = setInterval(() => seen.add(status()?.text ?? ""), 5);
  try {
    await extension.activate(context);
    const provider = await until("the inline completion provider", () => stub.providers[0]?.provider);
    await until("the models", () => /^\$\(check\) codila/.test(status().text) && !/loading/.test(status().text));
    assert.ok([...seen].some((t) => /loading|spin/.test(t)), `the status bar showed the start: ${[...seen]}`);
    assert.deepEqual(stub.recorded.messages.filter((m) => m.kind === "error"), []);
    const trace = stub.recorded.channels.find((c) => c.name === "codila trace")!.lines;
    assert.ok(trace.some((line) => /Sending request 'initialize/.test(line)), "codila.trace.server traces to its channel");

    // an inline suggestion at the end of `def scale(...):`'s body start
    const source = new stub.CancellationTokenSource();
    const list = await provider.provideInlineCompletionItems(
      document, new stub.Position(6, 15), { triggerKind: stub.InlineCompletionTriggerKind.Invoke }, source.token);
    assert.ok(list && list.items.length >= 1, "an item comes back");
    assert.equal(typeof list.items[0].insertText, "string");
    const drawnWhileDecoding = editor.history.filter((h) => h.drawn.length > 0);
    assert.ok(drawnWhileDecoding.length >= 1, "drafts were drawn while it decoded (a URI with # and a space)");
    assert.ok(drawnWhileDecoding.every((h) => h.drawn.every(([line]) => line === 6)), "inline drafts sit on the cursor's line");
    assert.deepEqual(editor.drawn(), [], "and are gone once it answered");
    await until("the speed in the status bar", () => /tok\/s/.test(status().text));

    // infill lines 7-8 (the loop): drafts laid over the selection, the result applied
    editor.history.length = 0;
    editor.selection = new stub.Selection(new stub.Position(7, 0), new stub.Position(8, 33));
    const applied = await vscode.commands.executeCommand("codila.infill");
    assert.equal(applied, true);
    assert.equal(stub.recorded.progress.at(-1)!.title, "codila: infilling 2 lines");
    const overlaid = editor.history.filter((h) => h.hidden > 0 && h.drawn.length > 0);
    assert.ok(overlaid.length >= 1, "the selection was hidden under its draft while decoding");
    assert.ok(overlaid.some((h) => h.drawn.some(([, , text]) => text.includes("·"))), "masked regions drawn as ·");
    assert.deepEqual(editor.drawn(), []);
    assert.ok(document.getText().startsWith(SOURCE.split("\n").slice(0, 7).join("\n")), "text before the selection kept");
    assert.ok(document.getText().endsWith("    return result\n"), "text after the selection kept");

    // the server dies mid-decode: the draft goes, the status says so, and it comes back
    editor.history.length = 0;
    editor.selection = new stub.Selection(new stub.Position(1, 0), new stub.Position(2, 16));
    stub.setSetting("blockSize", 1); // more, smaller commits: time to see a draft first
    const output = stub.recorded.channels.find((c) => c.name === "codila")!.lines;
    await until("the setting to reach the server", () => output.some((line) => line.includes("B=1")));
    const infill = vscode.commands.executeCommand("codila.infill");
    await until("a first infill draft", () => editor.drawn().length > 0);
    const pid = execFileSync("pgrep", ["-f", "--", log]).toString().trim().split("\n").map(Number)[0];
    process.kill(pid, "SIGKILL");
    assert.equal(await infill, false, "nothing applied");
    await until("the draft to be cleared", () => editor.drawn().length === 0 && editor.styled(/display: none/).length === 0);
    await until("the restarted server", () => /^\$\(check\) codila/.test(status().text), 120_000);
    assert.deepEqual(stub.recorded.messages.filter((m) => m.kind === "error"), [], "a restart is no error");
  } finally {
    clearInterval(watch);
    await extension.deactivate();
    for (const d of context.subscriptions) d.dispose();
  }
});
