import { draft, lspRange, setup, tick } from "./fixtures";
import assert from "node:assert/strict";
import { test } from "node:test";
import * as vscode from "vscode";
import { infillMessage, infillSelection } from "../infill";
import * as stub from "./vscode";

const SOURCE = "def area(w, h):\n    a = w\n    b = h\n    return a * b\n";
const NB4 = "\u00a0".repeat(4);

function select(f: ReturnType<typeof setup>, sl: number, sc: number, el: number, ec: number) {
  f.editor.selection = new stub.Selection(new stub.Position(sl, sc), new stub.Position(el, ec));
}

test("infill shows a cancellable progress, draws the draft in place, and applies the result", async () => {
  const f = setup(SOURCE, "/work/x#1.py");
  select(f, 1, 0, 3, 16);
  const done = infillSelection({ connection: f.connection, live: f.live, report: f.report }, f.editor as unknown as vscode.TextEditor);
  await tick();
  const progress = stub.recorded.progress[0];
  assert.equal(progress.title, "codila: infilling 3 lines");
  const sent = f.server.last();
  assert.equal(sent.method, "codila/infill");
  assert.equal(sent.params.textDocument.uri, "file:///work/x%231.py");
  assert.deepEqual(sent.params.range, lspRange(1, 0, 3, 16));

  // blocks land in any order: the last line first, then the first; masked regions are dots
  f.live.receive(draft(sent.params.textDocument.uri, 5, "⋯\n⋯\n    return ⋯", lspRange(1, 0, 3, 16), { masks: [5, 4, 2] }));
  assert.deepEqual(f.editor.drawn(), [
    [1, 0, "·····", true],
    [2, 0, "····", true],
    [3, 0, `${NB4}return ··`, false],
  ]);
  assert.equal(f.editor.styled(/display: none/).length, 3, "the selection's own text is hidden meanwhile");
  assert.deepEqual(progress.reports.at(-1), { message: "11 tokens still masked" });
  f.live.receive(draft(sent.params.textDocument.uri, 5, "    s = w * h\n⋯\n    return ⋯", lspRange(1, 0, 3, 16)));
  assert.deepEqual(f.editor.drawn(), [
    [1, 0, `${NB4}s = w * h`, false],
    [2, 0, "···", true],
    [3, 0, `${NB4}return ···`, false],
  ]);
  assert.deepEqual(progress.reports.at(-1), { message: "2 masked regions left" });

  const text = "    s = w * h\n    # area\n    return s";
  f.live.receive({ ...draft(sent.params.textDocument.uri, 5, text, lspRange(1, 0, 3, 16)), done: true, stats: { tokens_per_s: 20 } });
  sent.resolve({ range: lspRange(1, 0, 3, 16), text, stats: { tokens_per_s: 20 } });
  assert.equal(await done, true);
  assert.deepEqual(f.editor.drawn(), []);
  assert.deepEqual(f.editor.styled(/display: none/), []);
  assert.equal(f.document.getText(), `def area(w, h):\n${text}\n`);
  assert.equal(f.views.at(-1)!.text, "$(check) codila 20 tok/s");
});

test("cancelling the progress cancels the request and leaves the document as it was", async () => {
  const f = setup(SOURCE);
  select(f, 1, 0, 2, 9);
  const done = infillSelection({ connection: f.connection, live: f.live, report: f.report }, f.editor as unknown as vscode.TextEditor);
  await tick();
  const sent = f.server.last();
  f.live.receive(draft(sent.params.textDocument.uri, 1, "⋯", lspRange(1, 0, 2, 9)));
  assert.equal(f.editor.drawn().length, 1);
  stub.recorded.progress[0].source.cancel();
  assert.equal(sent.token.isCancellationRequested, true, "the cancel reaches the request ($/cancelRequest)");
  assert.equal(await done, false);
  assert.deepEqual(f.editor.drawn(), []);
  assert.equal(f.document.getText(), SOURCE);
  assert.deepEqual(f.errors, [], "cancelling is not an error");
});

test("a document edited while decoding is not overwritten", async () => {
  const f = setup(SOURCE);
  select(f, 1, 0, 1, 9);
  const done = infillSelection({ connection: f.connection, live: f.live, report: f.report }, f.editor as unknown as vscode.TextEditor);
  await tick();
  f.document.edit(new stub.Range(0, 0, 0, 0), "# edited\n");
  f.server.last().resolve({ range: lspRange(1, 0, 1, 9), text: "    a = 2" });
  assert.equal(await done, false);
  assert.match(stub.recorded.messages.at(-1)!.text, /changed while decoding/);
  assert.ok(f.document.getText().startsWith("# edited\ndef area"));
});

test("without a running server it says so instead of failing", async () => {
  const f = setup(SOURCE);
  f.disconnect();
  assert.equal(await infillSelection({ connection: f.connection, live: f.live, report: f.report }, f.editor as unknown as vscode.TextEditor), false);
  assert.match(stub.recorded.messages.at(-1)!.text, /not running/);
});

test("a superseded infill (null) applies nothing; an error response is reported", async () => {
  const f = setup(SOURCE);
  const first = infillSelection({ connection: f.connection, live: f.live, report: f.report }, f.editor as unknown as vscode.TextEditor);
  await tick();
  assert.equal(stub.recorded.progress[0].title, "codila: infilling at the cursor");
  f.server.last().resolve(null);
  assert.equal(await first, false);
  const second = infillSelection({ connection: f.connection, live: f.live, report: f.report }, f.editor as unknown as vscode.TextEditor);
  await tick();
  f.server.last().reject(Object.assign(new Error("unknown document"), { code: -32602 }));
  assert.equal(await second, false);
  assert.equal(f.errors.length, 1);
});

test("infill progress messages", () => {
  const d = (text: string, extra = {}) => ({ ...draft("u", 1, text, lspRange(0, 0, 0, 0)), ...extra });
  assert.equal(infillMessage(d("a ⋯ b")), "1 masked region left");
  assert.equal(infillMessage(d("⋯ a ⋯")), "2 masked regions left");
  assert.equal(infillMessage(d("a b")), "finishing…");
  assert.equal(infillMessage(d("a b", { done: true })), "applying…");
});
