import { ask, draft, lspRange, setup, tick } from "./fixtures";
import assert from "node:assert/strict";
import { test } from "node:test";
import { carryOver } from "../carryover";
import { offsetAt, pause } from "../provider";
import * as stub from "./vscode";

const SOURCE = "def add(a, b):\n    \nprint(add(1, 2))\n";
const Invoke = stub.InlineCompletionTriggerKind.Invoke;

test("an automatic request waits for the debounce; typing on cancels it before anything is sent", async () => {
  const f = setup(SOURCE);
  stub.setSetting("debounceMs", 30);
  const first = ask(f, 1, 4);
  await tick(5);
  assert.equal(f.server.requests.length, 0, "still debouncing");
  first.cancel();
  assert.equal(await first.result, undefined);
  await tick(40);
  assert.equal(f.server.requests.length, 0, "a cancelled debounce sends nothing");
  const second = ask(f, 1, 4);
  await tick(40);
  assert.equal(f.server.requests.length, 1);
  second.cancel();
  await second.result;
});

test("a manual trigger asks at once; the request carries the URI, position, kind and a progress token", async () => {
  const f = setup(SOURCE, "/work/dir #2/a#b.py");
  stub.setSetting("debounceMs", 10_000);
  const { result } = ask(f, 1, 4, Invoke);
  await tick();
  const sent = f.server.last();
  assert.equal(sent.method, "textDocument/inlineCompletion");
  assert.equal(sent.params.textDocument.uri, "file:///work/dir%20%232/a%23b.py", "the URI as VS Code encodes it");
  assert.deepEqual(sent.params.position, { line: 1, character: 4 });
  assert.deepEqual(sent.params.context, { triggerKind: 1 });
  assert.match(sent.params.workDoneToken, /^codila-vscode-\d+$/);
  sent.resolve({ items: [{ insertText: "return a + b", range: lspRange(1, 4, 1, 4) }] });
  const list = (await result) as unknown as stub.InlineCompletionList;
  assert.equal(list.items.length, 1);
  assert.equal(list.items[0].insertText, "return a + b");
  assert.deepEqual([list.items[0].range!.start.line, list.items[0].range!.start.character], [1, 4]);
});

test("disabled, manual mode and an open completion popup send nothing", async () => {
  const f = setup(SOURCE);
  stub.setSetting("debounceMs", 0);
  stub.setSetting("enable", false);
  assert.equal(await ask(f, 1, 4, Invoke).result, undefined);
  stub.setSetting("enable", true);
  stub.setSetting("triggerMode", "manual");
  assert.equal(await ask(f, 1, 4).result, undefined, "manual mode: no automatic requests");
  const popup = { selectedCompletionInfo: { range: new stub.Range(1, 4, 1, 4), text: "return" } };
  assert.equal(await ask(f, 1, 4, Invoke, popup).result, undefined);
  assert.equal(f.server.requests.length, 0);
  const manual = ask(f, 1, 4, Invoke);
  await tick();
  assert.equal(f.server.requests.length, 1, "manual mode still answers an explicit trigger");
  f.server.last().resolve(null);
  assert.deepEqual(((await manual.result) as unknown as stub.InlineCompletionList).items, []);
});

test("while it decodes: drafts drawn at the cursor, progress in the status bar, stats at the end", async () => {
  const f = setup(SOURCE, "/work/a#b.py");
  stub.setSetting("debounceMs", 0);
  const { result } = ask(f, 1, 4, Invoke);
  await tick();
  const sent = f.server.last();
  assert.equal(f.views.at(-1)!.text, "$(loading~spin) codila");
  f.server.progress.get(sent.params.workDoneToken)!({ kind: "report", percentage: 50, message: "16 of 32 tokens" });
  assert.equal(f.views.at(-1)!.text, "$(loading~spin) codila 50%");
  // the server echoes the URI exactly as sent (file:///work/a%23b.py); `#` must not break matching
  f.live.receive(draft(sent.params.textDocument.uri, 1, "return ⋯", lspRange(1, 4, 1, 4)));
  assert.deepEqual(f.editor.drawn(), [[1, 4, "return ···", false]]);
  f.live.receive(draft(decodeURIComponent(sent.params.textDocument.uri), 1, "return a ⋯", lspRange(1, 4, 1, 4)));
  assert.deepEqual(f.editor.drawn(), [[1, 4, "return a ···", false]], "a decoded echo matches too");
  f.live.receive({ ...draft(sent.params.textDocument.uri, 1, "return a + b", lspRange(1, 4, 1, 4)), done: true, stats: { tokens_per_s: 12.4, text_tokens: 5 } });
  assert.deepEqual(f.editor.drawn(), [], "the final draft clears the live view");
  sent.resolve({ items: [{ insertText: "return a + b", range: lspRange(1, 4, 1, 4) }] });
  await result;
  assert.equal(f.views.at(-1)!.text, "$(check) codila 12 tok/s");
  assert.equal(f.server.progress.size, 0, "the progress handler is released");
});

test("with codila.liveDraft off nothing is drawn", async () => {
  const f = setup(SOURCE);
  stub.setSetting("debounceMs", 0);
  stub.setSetting("liveDraft", false);
  const { result } = ask(f, 1, 4, Invoke);
  await tick();
  f.live.receive(draft(f.uri, 1, "return ⋯", lspRange(1, 4, 1, 4)));
  assert.deepEqual(f.editor.drawn(), []);
  f.server.last().resolve(null);
  await result;
});

test("a cancelled request ends quietly and clears its draft; a failed one reports the error", async () => {
  const f = setup(SOURCE);
  stub.setSetting("debounceMs", 0);
  const first = ask(f, 1, 4, Invoke);
  await tick();
  f.live.receive(draft(f.uri, 1, "return ⋯", lspRange(1, 4, 1, 4)));
  assert.equal(f.editor.drawn().length, 1);
  first.cancel();
  assert.equal(await first.result, undefined);
  assert.deepEqual(f.editor.drawn(), []);
  assert.deepEqual(f.errors, []);
  const second = ask(f, 1, 4, Invoke);
  await tick();
  f.server.last().reject(Object.assign(new Error("codila: no models: run `codila models prepare`"), { code: -32603 }));
  assert.equal(await second.result, undefined);
  assert.equal(f.errors.length, 1);
  assert.equal(f.status.current.phase, "error");
  const third = ask(f, 1, 4, Invoke);
  await tick();
  f.server.last().reject(Object.assign(new Error("Pending response rejected since connection got disposed"), { code: -32097 }));
  await third.result;
  assert.equal(f.errors.length, 1, "a connection going away is not an error to report");
});

test("no server running: no request, no error", async () => {
  const f = setup(SOURCE);
  stub.setSetting("debounceMs", 0);
  f.disconnect();
  assert.equal(await ask(f, 1, 4, Invoke).result, undefined);
  assert.deepEqual(f.errors, []);
});

test("accept word / line: the rest of the suggestion is carried over without a new decode", async () => {
  const f = setup(SOURCE);
  stub.setSetting("debounceMs", 0);
  const { result } = ask(f, 1, 4, Invoke);
  await tick();
  f.server.last().resolve({ items: [{ insertText: "return a + b\n    # done", range: lspRange(1, 4, 1, 4) }] });
  await result;
  // editor.action.inlineSuggest.acceptNextWord inserts "return " and asks again at the new cursor
  f.document.edit(new stub.Range(1, 4, 1, 4), "return ");
  const afterWord = (await ask(f, 1, 11).result) as unknown as stub.InlineCompletionList;
  assert.equal(f.server.requests.length, 1, "no new request");
  assert.equal(afterWord.items[0].insertText, "a + b\n    # done");
  assert.deepEqual([afterWord.items[0].range!.start.line, afterWord.items[0].range!.start.character], [1, 11]);
  // editor.action.inlineSuggest.acceptNextLine inserts the rest of the line
  f.document.edit(new stub.Range(1, 11, 1, 11), "a + b\n");
  const afterLine = (await ask(f, 2, 0).result) as unknown as stub.InlineCompletionList;
  assert.equal(afterLine.items[0].insertText, "    # done");
  // typing something else: a new request
  f.document.edit(new stub.Range(2, 0, 2, 0), "x");
  const other = ask(f, 2, 1);
  await tick();
  assert.equal(f.server.requests.length, 2, "the document moved away from the suggestion");
  other.cancel();
  await other.result;
});

test("several suggestions (codila.suggestions) come back as items VS Code cycles through", async () => {
  const f = setup(SOURCE);
  stub.setSetting("debounceMs", 0);
  const { result } = ask(f, 1, 4, Invoke);
  await tick();
  f.server.last().resolve([
    { insertText: "return a + b", range: lspRange(1, 4, 1, 4) },
    { insertText: "return b + a", range: lspRange(1, 4, 1, 4) },
    { insertText: { kind: "snippet", value: "return ${1:a}" }, range: lspRange(1, 4, 1, 4) },
  ]);
  const list = (await result) as unknown as stub.InlineCompletionList;
  assert.deepEqual(list.items.map((i) => (typeof i.insertText === "string" ? i.insertText : i.insertText.value)), [
    "return a + b", "return b + a", "return ${1:a}",
  ]);
  f.document.edit(new stub.Range(1, 4, 1, 4), "return ");
  const rest = (await ask(f, 1, 11).result) as unknown as stub.InlineCompletionList;
  assert.deepEqual(rest.items.map((i) => i.insertText), ["a + b", "b + a"], "both plain items carry over");
});

test("carryOver needs the text around the suggestion unchanged and something accepted", () => {
  const shown = { key: "k", before: "ab", after: "yz", texts: ["cdef"] };
  assert.deepEqual(carryOver(shown, "k", "abcdyz", 4), ["ef"]);
  assert.equal(carryOver(shown, "k", "abyz", 2), undefined, "nothing accepted yet");
  assert.equal(carryOver(shown, "k", "abcdefyz", 6), undefined, "all of it accepted");
  assert.equal(carryOver(shown, "k", "abcXyz", 4), undefined, "typed something else");
  assert.equal(carryOver(shown, "k", "abcdyzz", 4), undefined, "the text after changed");
  assert.equal(carryOver(shown, "other", "abcdyz", 4), undefined, "another document");
});

test("offsetAt counts UTF-16 code units and clamps to the line", () => {
  const text = "é😀x\r\nab\n";
  assert.equal(offsetAt(text, { line: 0, character: 3 }), 3, "😀 is two code units");
  assert.equal(offsetAt(text, { line: 0, character: 99 }), 4, "clamped before \\r\\n");
  assert.equal(offsetAt(text, { line: 1, character: 1 }), 7);
  assert.equal(offsetAt(text, { line: 5, character: 0 }), text.length);
});

test("pause resolves false at once when cancelled", async () => {
  const source = new stub.CancellationTokenSource();
  const waiting = pause(10_000, source.token as never);
  source.cancel();
  assert.equal(await waiting, false);
  assert.equal(await pause(1, new stub.CancellationTokenSource().token as never), true);
});
